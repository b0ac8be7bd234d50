/*
 * The client side of flowtop's attribution scenarios (see mod.rs): one
 * program, one mode per scenario, copied under a unique name per scenario
 * (sc-<scenario>) so that its flows can only be attributed to it.
 *
 *   sc MODE SERVER4 SERVER6 PORT [ARG]
 *
 * Prints "pid N" for itself and for every process it forks that makes a
 * flow, then "ok" when done. The peer (peer.py) serves TCP: first byte 'd'
 * + 8-byte count: it sends that many bytes and closes; 'u': reads to EOF;
 * 'e': echoes to EOF. UDP: 'D' + 4-byte count + 2-byte size: it sends that
 * many datagrams back; 'E': echoes; anything else is dropped.
 *
 * Raw syscalls only (io_uring included): no library beyond libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/io_uring.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/icmp6.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

static const char *server4, *server6;
static int port;
static char buf[65536];

static void die(const char *what)
{
	fprintf(stderr, "sc: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static struct sockaddr_in sin4(const char *addr, int p)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p) };
	if (inet_pton(AF_INET, addr, &a.sin_addr) != 1)
		die("inet_pton");
	return a;
}

static struct sockaddr_in6 sin6(const char *addr, int p)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(p) };
	if (inet_pton(AF_INET6, addr, &a.sin6_addr) != 1)
		die("inet_pton6");
	return a;
}

static void timeout(int fd, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void connect_to(int fd, int v6, const char *addr, int p)
{
	int rc;
	if (v6) {
		struct sockaddr_in6 a = sin6(addr, p);
		rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	} else {
		struct sockaddr_in a = sin4(addr, p);
		rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	}
	if (rc)
		die("connect");
}

static int tcp_to(int v6, const char *addr, int p)
{
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	connect_to(fd, v6, addr, p);
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w <= 0)
			die("send");
		c += w;
		n -= w;
	}
}

static size_t read_to_eof(int fd)
{
	size_t total = 0;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r < 0)
			die("recv");
		if (r == 0)
			return total;
		total += r;
	}
}

/* Tells the TCP peer what to do: 'u', 'e', or 'd' with a byte count. */
static void tcp_cmd(int fd, char cmd, uint64_t count)
{
	unsigned char h[9] = { cmd };
	for (int i = 0; i < 8; i++)
		h[1 + i] = count >> (56 - 8 * i);
	send_all(fd, h, cmd == 'd' ? 9 : 1);
}

/* Uploads `bytes` and waits for the peer's close. */
static void tcp_upload(int v6, const char *addr, size_t bytes)
{
	int fd = tcp_to(v6, addr, port);
	tcp_cmd(fd, 'u', 0);
	for (size_t done = 0; done < bytes;) {
		size_t n = bytes - done < sizeof buf ? bytes - done : sizeof buf;
		send_all(fd, buf, n);
		done += n;
	}
	shutdown(fd, SHUT_WR);
	read_to_eof(fd);
	close(fd);
}

static void tcp_download(size_t bytes)
{
	int fd = tcp_to(0, server4, port);
	tcp_cmd(fd, 'd', bytes);
	shutdown(fd, SHUT_WR);
	read_to_eof(fd);
	close(fd);
}

static void tcp_duplex(size_t bytes)
{
	int fd = tcp_to(0, server4, port);
	tcp_cmd(fd, 'e', 0);
	for (size_t done = 0; done < bytes; done += 16384) {
		send_all(fd, buf, 16384);
		for (size_t got = 0; got < 16384;) {
			ssize_t r = recv(fd, buf, 16384 - got, 0);
			if (r <= 0)
				die("recv echo");
			got += r;
		}
	}
	shutdown(fd, SHUT_WR);
	read_to_eof(fd);
	close(fd);
}

static int udp_to(int v6, int proto, const char *addr, int p)
{
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, proto);
	if (fd < 0)
		die("socket udp");
	connect_to(fd, v6, addr, p);
	timeout(fd, 2000);
	return fd;
}

/* Sends `n` datagrams of `size`; with `echo`, each is echoed and read. */
static void udp_up(int v6, int proto, const char *addr, int p, int n, int size, int echo)
{
	int fd = udp_to(v6, proto, addr, p);
	memset(buf, 'x', size);
	buf[0] = echo ? 'E' : 'x';
	for (int i = 0; i < n; i++) {
		if (send(fd, buf, size, 0) != size)
			die("send udp");
		if (echo && recv(fd, buf + size, size, 0) < 0)
			die("recv udp echo");
	}
	close(fd);
}

/* Unconnected sends (sendto), as a DNS client does. */
static void udp_flood(int p, int n)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = sin4(server4, p);
	memset(buf, 'q', 40);
	for (int i = 0; i < n; i++)
		if (sendto(fd, buf, 40, 0, (struct sockaddr *)&a, sizeof a) != 40)
			die("sendto");
	close(fd);
}

static void udp_request(int fd, uint32_t count, uint16_t size)
{
	unsigned char r[7] = { 'D', count >> 24, count >> 16, count >> 8, count, size >> 8, size };
	if (send(fd, r, sizeof r, 0) != sizeof r)
		die("send request");
}

static void udp_down(int n, int size)
{
	int fd = udp_to(0, 0, server4, port);
	udp_request(fd, n, size);
	for (int i = 0; i < n; i++)
		if (recv(fd, buf, sizeof buf, 0) < 0)
			break; /* a lost datagram: the bytes check tells */
	close(fd);
}

static uint16_t csum(const void *p, size_t n, uint32_t sum)
{
	const unsigned char *c = p;
	for (; n > 1; n -= 2, c += 2)
		sum += (c[0] << 8) | c[1];
	if (n)
		sum += c[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons(~sum);
}

/* Raw-socket echo requests with a payload; the kernel's replies are read. */
static void icmp_echo(int v6, int count, int payload)
{
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
	if (fd < 0)
		die("socket raw icmp");
	timeout(fd, 1000);
	uint16_t id = 0x5c00 + port % 256;
	unsigned char pkt[1500] = { 0 };
	size_t len = 8 + payload;
	pkt[0] = v6 ? 128 : 8;
	pkt[4] = id >> 8;
	pkt[5] = id;
	memset(pkt + 8, 0xa5, payload);
	for (int seq = 1; seq <= count; seq++) {
		pkt[2] = pkt[3] = 0;
		pkt[6] = seq >> 8;
		pkt[7] = seq;
		if (!v6) {
			uint16_t c = csum(pkt, len, 0);
			memcpy(pkt + 2, &c, 2);
		} /* ICMPv6: the kernel computes the checksum of raw sockets */
		ssize_t rc;
		if (v6) {
			struct sockaddr_in6 a = sin6(server6, 0);
			rc = sendto(fd, pkt, len, 0, (struct sockaddr *)&a, sizeof a);
		} else {
			struct sockaddr_in a = sin4(server4, 0);
			rc = sendto(fd, pkt, len, 0, (struct sockaddr *)&a, sizeof a);
		}
		if (rc != (ssize_t)len)
			die("sendto icmp");
		recv(fd, buf, sizeof buf, 0);
	}
	close(fd);
}

/* Raw IP packets of a protocol conntrack has no tracker for (253: "for
 * experimentation", RFC 3692). The peer counts and drops them. */
static void raw_proto(int proto, int count, int payload)
{
	int fd = socket(AF_INET, SOCK_RAW, proto);
	if (fd < 0)
		die("socket raw");
	struct sockaddr_in a = sin4(server4, 0);
	memset(buf, 0x5a, payload);
	for (int i = 0; i < count; i++)
		if (sendto(fd, buf, payload, 0, (struct sockaddr *)&a, sizeof a) != payload)
			die("sendto raw");
	close(fd);
}

/* A UDP datagram with a hand-made IP header on an IPPROTO_RAW socket
 * (IP_HDRINCL): the socket's protocol (255) says nothing of the packet's. */
static void raw_hdrincl(int count, int payload)
{
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0)
		die("socket IPPROTO_RAW");
	unsigned char p[20 + 8 + 512] = { 0 };
	size_t len = 20 + 8 + payload;
	struct sockaddr_in s = sin4("192.0.2.1", 0), d = sin4(server4, port);
	p[0] = 0x45;
	p[2] = len >> 8, p[3] = len; /* the kernel fills id and checksum */
	p[8] = 64;
	p[9] = IPPROTO_UDP;
	memcpy(p + 12, &s.sin_addr, 4);
	memcpy(p + 16, &d.sin_addr, 4);
	uint16_t sport = 40000 + getpid() % 20000;
	p[20] = sport >> 8, p[21] = sport;
	p[22] = port >> 8, p[23] = port;
	p[24] = (8 + payload) >> 8, p[25] = 8 + payload; /* checksum 0: none */
	memset(p + 28, 'h', payload);
	for (int i = 0; i < count; i++)
		if (sendto(fd, p, len, 0, (struct sockaddr *)&d, sizeof d) != (ssize_t)len)
			die("sendto IPPROTO_RAW");
	close(fd);
}

static uint32_t crc32c(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffff;
	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78 : c >> 1;
	}
	return ~c;
}

/* An SCTP INIT from a raw socket (this kernel has no SCTP), answered by
 * the peer's INIT-ACK (read here): enough for conntrack to track an
 * association both ways. */
static void sctp_init(void)
{
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_SCTP);
	if (fd < 0)
		die("socket raw sctp");
	unsigned char p[32] = { 0 };
	uint16_t sport = 40000 + getpid() % 20000;
	p[0] = sport >> 8;
	p[1] = sport;
	p[2] = port >> 8;
	p[3] = port;
	/* verification tag 0 (INIT), checksum at 8..11 */
	p[12] = 1; /* INIT */
	p[15] = 20; /* chunk length */
	p[16] = 0x12, p[17] = 0x34, p[18] = 0x56, p[19] = 0x78; /* initiate tag */
	p[22] = 0xff; /* a_rwnd 65280 */
	p[25] = 1; /* outbound streams */
	p[27] = 1; /* inbound streams */
	p[28] = 0x01; /* initial TSN */
	uint32_t c = crc32c(p, sizeof p);
	/* CRC32c goes on the wire least significant byte first */
	p[8] = c, p[9] = c >> 8, p[10] = c >> 16, p[11] = c >> 24;
	struct sockaddr_in a = sin4(server4, 0);
	if (sendto(fd, p, sizeof p, 0, (struct sockaddr *)&a, sizeof a) != sizeof p)
		die("sendto sctp");
	timeout(fd, 1000);
	if (recv(fd, buf, sizeof buf, 0) < 0)
		die("no INIT-ACK");
	close(fd);
}

/* UDP frames written to the link with AF_PACKET: below netfilter, so this
 * host's conntrack never sees them (the peer's nft does). */
static void af_packet(const char *ifname, const char *dst_mac, int count)
{
	int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	if (fd < 0)
		die("socket af_packet");
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
				  .sll_ifindex = if_nametoindex(ifname), .sll_halen = 6 };
	unsigned int m[6];
	if (sscanf(dst_mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
		die("mac");
	for (int i = 0; i < 6; i++)
		ll.sll_addr[i] = m[i];
	unsigned char p[20 + 8 + 100] = { 0 };
	struct sockaddr_in s = sin4("192.0.2.1", 0), d = sin4(server4, 0);
	p[0] = 0x45;
	p[3] = sizeof p;
	p[8] = 64;
	p[9] = IPPROTO_UDP;
	memcpy(p + 12, &s.sin_addr, 4);
	memcpy(p + 16, &d.sin_addr, 4);
	uint16_t c = csum(p, 20, 0);
	memcpy(p + 10, &c, 2);
	p[20] = 0x9c, p[21] = 0x40; /* source port 40000 */
	p[22] = port >> 8, p[23] = port;
	p[25] = 8 + 100; /* UDP length; checksum 0: none */
	memset(p + 28, 'p', 100);
	for (int i = 0; i < count; i++)
		if (sendto(fd, p, sizeof p, 0, (struct sockaddr *)&ll, sizeof ll) != sizeof p)
			die("sendto af_packet");
	close(fd);
}

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
static void uring_send(size_t bytes)
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
static void uring_recv(size_t bytes)
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

static int data_file(size_t bytes)
{
	int f = memfd_create("sc-data", 0);
	if (f < 0)
		die("memfd_create");
	memset(buf, 'f', sizeof buf);
	for (size_t done = 0; done < bytes; done += sizeof buf)
		if (write(f, buf, sizeof buf) != sizeof buf)
			die("write memfd");
	return f;
}

static void do_sendfile(size_t bytes)
{
	int f = data_file(bytes);
	int fd = tcp_to(0, server4, port);
	tcp_cmd(fd, 'u', 0);
	off_t off = 0;
	while ((size_t)off < bytes)
		if (sendfile(fd, f, &off, bytes - off) <= 0)
			die("sendfile");
	shutdown(fd, SHUT_WR);
	read_to_eof(fd);
	close(fd);
}

static void do_splice(size_t bytes)
{
	int pipefd[2];
	if (pipe(pipefd))
		die("pipe");
	int fd = tcp_to(0, server4, port);
	tcp_cmd(fd, 'u', 0);
	for (size_t done = 0; done < bytes; done += 16384) {
		if (write(pipefd[1], buf, 16384) != 16384)
			die("write pipe");
		for (ssize_t left = 16384; left > 0;) {
			ssize_t n = splice(pipefd[0], NULL, fd, NULL, left, SPLICE_F_MOVE);
			if (n <= 0)
				die("splice");
			left -= n;
		}
	}
	shutdown(fd, SHUT_WR);
	read_to_eof(fd);
	close(fd);
}

static void do_sendmmsg(int rounds, int batch, int size)
{
	int fd = udp_to(0, 0, server4, port);
	struct mmsghdr m[64];
	struct iovec io[64];
	memset(buf, 'm', size);
	for (int i = 0; i < batch; i++) {
		io[i] = (struct iovec){ buf, size };
		m[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &io[i], .msg_iovlen = 1 } };
	}
	for (int r = 0; r < rounds; r++)
		for (int sent = 0; sent < batch;) {
			int n = sendmmsg(fd, m + sent, batch - sent, 0);
			if (n <= 0)
				die("sendmmsg");
			sent += n;
		}
	close(fd);
}

static void do_recvmmsg(int count, int size)
{
	int fd = udp_to(0, 0, server4, port);
	udp_request(fd, count, size);
	static char bufs[32][2048];
	struct mmsghdr m[32];
	struct iovec io[32];
	for (int got = 0; got < count;) {
		for (int i = 0; i < 32; i++) {
			io[i] = (struct iovec){ bufs[i], sizeof bufs[i] };
			m[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &io[i], .msg_iovlen = 1 } };
		}
		int n = recvmmsg(fd, m, 32, MSG_WAITFORONE, NULL);
		if (n <= 0)
			break; /* timed out: a lost datagram, the bytes check tells */
		got += n;
	}
	close(fd);
}

/* A local server in a child process, the client here: both ends are ours. */
static void loopback(size_t bytes)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = sin4("127.0.0.1", port);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4))
		die("bind/listen loopback");
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		int c = accept(l, NULL, NULL);
		read_to_eof(c);
		close(c);
		_exit(0);
	}
	printf("pid %d\n", child);
	close(l);
	int fd = tcp_to(0, "127.0.0.1", port);
	for (size_t done = 0; done < bytes; done += sizeof buf)
		send_all(fd, buf, sizeof buf);
	close(fd);
	waitpid(child, NULL, 0);
}

static void drip(int count, int every_ms)
{
	int fd = tcp_to(0, server4, port);
	tcp_cmd(fd, 'u', 0);
	for (int i = 0; i < count; i++) {
		send_all(fd, "d", 1);
		msleep(every_ms);
	}
	shutdown(fd, SHUT_WR);
	read_to_eof(fd);
	close(fd);
}

static void sequential(int n, size_t bytes)
{
	for (int i = 0; i < n; i++)
		tcp_upload(0, server4, bytes);
}

static void concurrent(int n, size_t bytes)
{
	int fds[64];
	for (int i = 0; i < n; i++) {
		fds[i] = tcp_to(0, server4, port);
		tcp_cmd(fds[i], 'u', 0);
	}
	for (int i = 0; i < n; i++) {
		send_all(fds[i], buf, bytes);
		shutdown(fds[i], SHUT_WR);
	}
	for (int i = 0; i < n; i++) {
		read_to_eof(fds[i]);
		close(fds[i]);
	}
}

/* A connection the peer refuses (nothing listens on the port): a SYN and
 * the peer's RST. */
static void refused(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = sin4(server4, port);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno != ECONNREFUSED)
		die("connect was not refused");
	close(fd);
}

/* `n` processes, each making one connection and exiting at once. */
static void short_lived(int n, size_t bytes)
{
	pid_t kids[64];
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			die("fork");
		if (kids[i] == 0) {
			tcp_upload(0, server4, bytes);
			_exit(0);
		}
		printf("pid %d\n", kids[i]);
	}
	for (int i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: sc MODE SERVER4 SERVER6 PORT [ARG]\n");
		return 2;
	}
	const char *mode = argv[1], *arg = argc > 5 ? argv[5] : "";
	const char *arg2 = argc > 6 ? argv[6] : "";
	server4 = argv[2];
	server6 = argv[3];
	port = atoi(argv[4]);
	memset(buf, 'b', sizeof buf);
	printf("pid %d\n", getpid());
	const size_t MB = 1 << 20;
	if (!strcmp(mode, "tcp-down"))
		tcp_download(4 * MB);
	else if (!strcmp(mode, "tcp-up"))
		tcp_upload(0, server4, 4 * MB);
	else if (!strcmp(mode, "tcp-duplex"))
		tcp_duplex(2 * MB);
	else if (!strcmp(mode, "udp-up"))
		udp_up(0, 0, server4, port, 200, 1200, 0);
	else if (!strcmp(mode, "udp-down"))
		udp_down(200, 1200);
	else if (!strcmp(mode, "udp-echo"))
		udp_up(0, 0, server4, port, 100, 1200, 1);
	else if (!strcmp(mode, "udplite"))
		udp_up(0, IPPROTO_UDPLITE, server4, port, 50, 600, 0);
	else if (!strcmp(mode, "icmp-echo"))
		icmp_echo(0, 5, 1000);
	else if (!strcmp(mode, "icmp6-echo"))
		icmp_echo(1, 5, 1000);
	else if (!strcmp(mode, "tcp6"))
		tcp_upload(1, server6, 1 * MB);
	else if (!strcmp(mode, "udp6"))
		udp_up(1, 0, server6, port, 100, 1000, 1);
	else if (!strcmp(mode, "sctp"))
		sctp_init();
	else if (!strcmp(mode, "udp-flood"))
		udp_flood(port, 2000);
	else if (!strcmp(mode, "raw"))
		raw_proto(atoi(arg), 5, 200);
	else if (!strcmp(mode, "raw-hdrincl"))
		raw_hdrincl(10, 300);
	else if (!strcmp(mode, "short-lived"))
		short_lived(20, 4096);
	else if (!strcmp(mode, "af-packet"))
		af_packet(arg, arg2, 10);
	else if (!strcmp(mode, "uring-send"))
		uring_send(1 * MB);
	else if (!strcmp(mode, "uring-recv"))
		uring_recv(1 * MB);
	else if (!strcmp(mode, "sendfile"))
		do_sendfile(1 * MB);
	else if (!strcmp(mode, "splice"))
		do_splice(1 * MB);
	else if (!strcmp(mode, "sendmmsg"))
		do_sendmmsg(10, 32, 800);
	else if (!strcmp(mode, "recvmmsg"))
		do_recvmmsg(320, 800);
	else if (!strcmp(mode, "loopback"))
		loopback(1 * MB);
	else if (!strcmp(mode, "drip"))
		drip(10, 150);
	else if (!strcmp(mode, "sequential"))
		sequential(60, 1024);
	else if (!strcmp(mode, "refused"))
		refused();
	else if (!strcmp(mode, "concurrent"))
		concurrent(30, 8192);
	else {
		fprintf(stderr, "sc: unknown mode %s\n", mode);
		return 2;
	}
	printf("ok\n");
	return 0;
}
