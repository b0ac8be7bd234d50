/*
 * io_uring modes of the scenario client (see sc.c), through raw syscalls
 * (no liburing on a fresh machine).
 */
#include "sc.h"

/* io_uring through raw syscalls: one submission at a time. */
struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static void ring_init(struct ring *r)
{
	struct io_uring_params p = { 0 };
	r->fd = syscall(__NR_io_uring_setup, 8, &p);
	if (r->fd < 0)
		die("io_uring_setup");
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_SQ_RING);
	char *cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_CQ_RING);
	r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
		die("mmap io_uring");
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

/* Submits one prepared SQE and returns its result. */
static int ring_run(struct ring *r, struct io_uring_sqe *sqe)
{
	unsigned tail = *r->sq_tail, i = tail & *r->sq_mask;
	r->sqes[i] = *sqe;
	r->sq_array[i] = i;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		die("io_uring_enter");
	unsigned head = *r->cq_head;
	while (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		;
	int res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

/* Socket made by IORING_OP_SOCKET, forced into an io-wq worker thread
 * (IOSQE_ASYNC: socket(2) runs there, not in this thread), connected by
 * IORING_OP_CONNECT, data sent by IORING_OP_SEND. */
void uring_send(size_t bytes)
{
	struct ring r;
	ring_init(&r);
	struct io_uring_sqe s = { .opcode = IORING_OP_SOCKET, .flags = IOSQE_ASYNC, .fd = AF_INET,
				  .off = SOCK_STREAM };
	int fd = ring_run(&r, &s);
	if (fd < 0) {
		errno = -fd;
		die("IORING_OP_SOCKET");
	}
	struct sockaddr_in a = sin4(server4, port);
	s = (struct io_uring_sqe){ .opcode = IORING_OP_CONNECT, .fd = fd, .addr = (uintptr_t)&a,
				   .off = sizeof a };
	int rc = ring_run(&r, &s);
	if (rc < 0) {
		errno = -rc;
		die("IORING_OP_CONNECT");
	}
	tcp_cmd(fd, 'u', 0);
	for (size_t done = 0; done < bytes;) {
		s = (struct io_uring_sqe){ .opcode = IORING_OP_SEND, .fd = fd, .addr = (uintptr_t)buf,
					   .len = sizeof buf, .msg_flags = MSG_NOSIGNAL };
		rc = ring_run(&r, &s);
		if (rc <= 0) {
			errno = -rc;
			die("IORING_OP_SEND");
		}
		done += rc;
	}
	shutdown(fd, SHUT_WR);
	read_to_eof(fd);
	close(fd);
}

/* A plain socket; the download read by IORING_OP_RECV. */
void uring_recv(size_t bytes)
{
	struct ring r;
	ring_init(&r);
	int fd = tcp_to(0, server4, port);
	tcp_cmd(fd, 'd', bytes);
	shutdown(fd, SHUT_WR);
	for (;;) {
		struct io_uring_sqe s = { .opcode = IORING_OP_RECV, .fd = fd, .addr = (uintptr_t)buf,
					  .len = sizeof buf };
		int rc = ring_run(&r, &s);
		if (rc < 0) {
			errno = -rc;
			die("IORING_OP_RECV");
		}
		if (rc == 0)
			break;
	}
	close(fd);
}

