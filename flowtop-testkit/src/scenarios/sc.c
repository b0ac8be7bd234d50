/*
 * The client side of flowtop's attribution scenarios (see mod.rs): one
 * program, one mode per scenario, copied under a unique name per scenario
 * (sc-<scenario>) so that its flows can only be attributed to it.
 *
 *   sc MODE SERVER4 SERVER6 PORT [ARG]
 *
 * SERVER4 is the address to connect to (for tcp-sink: unused, it listens on
 * PORT). Prints "pid N" for itself and for every process it forks that makes a
 * flow, then "ok" when done. The peer (peer.py) serves TCP: first byte 'd'
 * + 8-byte count: it sends that many bytes and closes; 'u': reads to EOF;
 * 'e': echoes to EOF. UDP: 'D' + 4-byte count + 2-byte size: it sends that
 * many datagrams back; 'E': echoes; anything else is dropped.
 *
 * Raw syscalls only (io_uring included): no library beyond libc.
 */
#include "sc.h"

const char *server4, *server6;
int port;
char buf[65536];

void die(const char *what)
{
	fprintf(stderr, "sc: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

struct sockaddr_in sin4(const char *addr, int p)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p) };
	if (inet_pton(AF_INET, addr, &a.sin_addr) != 1)
		die("inet_pton");
	return a;
}

struct sockaddr_in6 sin6(const char *addr, int p)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(p) };
	if (inet_pton(AF_INET6, addr, &a.sin6_addr) != 1)
		die("inet_pton6");
	return a;
}

void timeout(int fd, int ms)
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

int tcp_to(int v6, const char *addr, int p)
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

size_t read_to_eof(int fd)
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
void tcp_cmd(int fd, char cmd, uint64_t count)
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

/* A TCP listener on `addr`:`p` (SO_REUSEADDR: reruns on the same port). */
static int tcp_listener(const char *addr, int p)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = sin4(addr, p);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4))
		die("bind/listen");
	return l;
}

/* A local server in a child process, the client here: both ends are ours. */
static void loopback(size_t bytes)
{
	int l = tcp_listener("127.0.0.1", port);
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

/* A server on `port` (inside a container, behind a published port): says
 * "listening" once it listens, accepts one connection and reads it to EOF.
 * The client is another program (run by the suite from the outside). */
static void tcp_sink(void)
{
	int l = tcp_listener("0.0.0.0", port);
	timeout(l, 10000); /* accept(2) honours SO_RCVTIMEO */
	printf("listening\n");
	fflush(stdout);
	int c = accept(l, NULL, NULL);
	if (c < 0)
		die("accept");
	read_to_eof(c);
	close(c);
	close(l);
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
	else if (!strcmp(mode, "tcp-sink"))
		tcp_sink();
	else {
		fprintf(stderr, "sc: unknown mode %s\n", mode);
		return 2;
	}
	printf("ok\n");
	return 0;
}
