"""Tests of fairshare.py with the kit: the SITE factor sprio shows."""
import json

from fairshare import FairShare


def site(tmp_path, usage):
    f = tmp_path / "usage.json"
    f.write_text(json.dumps(usage))
    return type("Site", (FairShare,), {"SHARES": {"phys": 0.5, "chem": 0.5},
                                        "USAGE_FILE": str(f)})


def test_underserved_account_ranks_higher(slurm_kit, tmp_path):
    h = site(tmp_path, {"phys": 900, "chem": 100})
    phys = slurm_kit.run_set(h, slurm_kit.make_job(job_id=1, account="phys"))
    chem = slurm_kit.run_set(h, slurm_kit.make_job(job_id=2, account="chem"))
    assert chem.factor > phys.factor > 0
    assert chem.site_factor == chem.factor + slurm_kit.NICE_OFFSET


def test_unknown_account_gets_zero(slurm_kit, tmp_path):
    out = slurm_kit.run_set(site(tmp_path, {}), slurm_kit.make_job(job_id=3, account="bio"))
    assert (out.ok, out.changed, out.factor) == (True, True, 0)


def test_update_covers_every_pending_job(slurm_kit, tmp_path):
    h = site(tmp_path, {"phys": 1, "chem": 1})
    jobs = [slurm_kit.make_job(job_id=i, account=a, state="PENDING")
            for i, a in ((10, "phys"), (11, "chem"), (12, None))]
    out = slurm_kit.run_update(h, jobs)
    assert out.ok
    assert out.factors == {10: 50000, 11: 50000, 12: 0}
