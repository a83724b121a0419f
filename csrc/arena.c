/*
 * arena.c - record arenas: a chain of malloc'd chunks freed as one when the
 * last reference goes (the C side holds one per call; Python takes its own
 * for a record a handler keeps).  Small arenas are recycled.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "spm.h"


struct spm_chunk {
	struct spm_chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct spm_arena {
	int refs;
	bool pooled;               /* header + first chunk are one block */
	struct spm_chunk *head;    /* newest chunk first */
	spm_arena_t *next_free;    /* while in the free list */
};

/* Small arenas (one per hook call) are recycled: the daemon thread takes
 * one, a worker gives it back, and neither reaches malloc/free (whose
 * cross-thread frees of 2 KiB blocks contend on glibc's main arena). */
#define SMALL_CHUNK 2048
#define POOL_MAX 1024
#define ARENA_HDR ((sizeof(struct spm_arena) + sizeof(max_align_t) - 1) & \
		   ~(sizeof(max_align_t) - 1))

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static spm_arena_t *pool_head;
static int pool_count;

static struct spm_chunk *_chunk_new(size_t size)
{
	struct spm_chunk *c = malloc(sizeof(*c) + size);

	if (!c)
		return NULL;
	c->next = NULL;
	c->used = 0;
	c->size = size;
	return c;
}

static spm_arena_t *_small_arena(void)
{
	spm_arena_t *a;
	struct spm_chunk *c;

	pthread_mutex_lock(&pool_mu);
	if ((a = pool_head)) {
		pool_head = a->next_free;
		pool_count--;
	}
	pthread_mutex_unlock(&pool_mu);
	if (!a && !(a = malloc(ARENA_HDR + sizeof(*c) + SMALL_CHUNK)))
		return NULL;
	c = (struct spm_chunk *)((char *)a + ARENA_HDR);
	c->next = NULL;
	c->used = 0;
	c->size = SMALL_CHUNK;
	a->head = c;
	a->pooled = true;
	a->refs = 1;
	return a;
}

spm_arena_t *spm_arena_new(size_t first_chunk)
{
	spm_arena_t *a;

	if (first_chunk <= SMALL_CHUNK)
		return _small_arena();
	if (!(a = malloc(sizeof(*a))))
		return NULL;
	if (!(a->head = _chunk_new(first_chunk))) {
		free(a);
		return NULL;
	}
	a->pooled = false;
	a->refs = 1;
	return a;
}

void *spm_arena_alloc(spm_arena_t *a, size_t size)
{
	struct spm_chunk *c = a->head;
	size_t align = sizeof(max_align_t);
	size_t off = (c->used + align - 1) & ~(align - 1);
	void *p;

	if (off > c->size || c->size - off < size) {
		size_t sz = c->size * 2;

		if (sz < size)
			sz = size;
		if (!(c = _chunk_new(sz)))
			return NULL;
		c->next = a->head;
		a->head = c;
		off = 0;
	}
	p = (char *)c->data + off;
	c->used = off + size;
	memset(p, 0, size);
	return p;
}

char *spm_arena_strdup(spm_arena_t *a, const char *s)
{
	size_t len;
	char *p;

	if (!s)
		return NULL;
	len = strlen(s);
	/* strings need no alignment: pack them tightly */
	if (a->head->size - a->head->used >= len + 1) {
		p = (char *)a->head->data + a->head->used;
		a->head->used += len + 1;
	} else if (!(p = spm_arena_alloc(a, len + 1))) {
		return NULL;
	}
	memcpy(p, s, len + 1);
	return p;
}

void spm_arena_ref(spm_arena_t *a)
{
	if (a)
		__atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
}

void spm_arena_unref(spm_arena_t *a)
{
	struct spm_chunk *c, *next, *embedded;

	if (!a || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL))
		return;
	embedded = a->pooled ?
		(struct spm_chunk *)((char *)a + ARENA_HDR) : NULL;
	for (c = a->head; c; c = next) {
		next = c->next;
		if (c != embedded)
			free(c);
	}
	if (a->pooled) {
		pthread_mutex_lock(&pool_mu);
		if (pool_count < POOL_MAX) {
			a->next_free = pool_head;
			pool_head = a;
			pool_count++;
			a = NULL;
		}
		pthread_mutex_unlock(&pool_mu);
	}
	free(a);
}

char **spm_arena_strv(spm_arena_t *a, uint32_t n)
{
	return spm_arena_alloc(a, ((size_t)n + 1) * sizeof(char *));
}
