/*
 * Raw IP and AF_PACKET senders of the scenario client (see sc.c): what
 * conntrack tracks from packets no ordinary socket sends.
 */
#include "sc.h"

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
void icmp_echo(int v6, int count, int payload)
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
void raw_proto(int proto, int count, int payload)
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
void raw_hdrincl(int count, int payload)
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
void sctp_init(void)
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
void af_packet(const char *ifname, const char *dst_mac, int count)
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

