/*
 * jobdesc_fields.h - the fields of spm_jobdesc_t that map one to one onto
 * job_desc_msg_t members of the same name, for snapshot.c (copy in) and
 * jobdesc.c (write back).  C only (an X-macro list, not for cffi).
 * Fields handled by hand: min_mem_per_node/min_mem_per_cpu
 * (pn_min_memory), environment (written back as a whole when Python
 * replaced it), spank_job_env and argv (read only), job_id (read only; a
 * member of step_id from 25.11: compat.h), and user_name,
 * default_account, default_qos (read only: no job_desc_msg_t members,
 * snapshot.c looks them up as job_submit/lua does).
 *
 * JD_NUM(name): integer member; JD_STR(name): char * member.
 * JD_RO_*: copied in, never written back (Python refuses to set them).
 */
#define SPM_JOBDESC_FIELDS \
	JD_NUM(contiguous) JD_NUM(core_spec) JD_NUM(cores_per_socket) \
	JD_NUM(cpus_per_task) JD_NUM(immediate) JD_NUM(kill_on_node_fail) \
	JD_NUM(mail_type) JD_NUM(ntasks_per_core) JD_NUM(ntasks_per_node) \
	JD_NUM(ntasks_per_socket) JD_NUM(ntasks_per_tres) JD_NUM(pn_min_cpus) \
	JD_NUM(reboot) JD_NUM(requeue) JD_NUM(shared) \
	JD_NUM(sockets_per_node) JD_NUM(threads_per_core) \
	JD_NUM(wait_all_nodes) \
	JD_RO_NUM(user_id) JD_RO_NUM(group_id) \
	JD_NUM(delay_boot) JD_NUM(max_cpus) JD_NUM(max_nodes) \
	JD_NUM(min_cpus) JD_NUM(min_nodes) JD_NUM(num_tasks) \
	JD_NUM(pn_min_tmp_disk) JD_NUM(priority) JD_NUM(time_limit) \
	JD_NUM(time_min) JD_NUM(begin_time) JD_NUM(deadline) \
	JD_STR(account) JD_STR(acctg_freq) JD_STR(admin_comment) \
	JD_RO_STR(alloc_node) JD_STR(array_inx) JD_STR(batch_features) \
	JD_STR(burst_buffer) JD_STR(clusters) JD_STR(comment) \
	JD_STR(container) JD_STR(cpus_per_tres) JD_STR(dependency) \
	JD_STR(exc_nodes) JD_STR(features) JD_STR(licenses) \
	JD_STR(mail_user) JD_STR(mcs_label) JD_STR(mem_per_tres) \
	JD_STR(name) JD_STR(network) JD_STR(partition) JD_STR(prefer) \
	JD_STR(qos) JD_STR(req_nodes) JD_STR(reservation) JD_RO_STR(script) \
	JD_STR(std_err) JD_STR(std_in) JD_STR(std_out) \
	JD_RO_STR(submit_line) JD_STR(tres_per_job) JD_STR(tres_per_node) \
	JD_STR(tres_per_socket) JD_STR(tres_per_task) JD_STR(wckey) \
	JD_STR(work_dir)
