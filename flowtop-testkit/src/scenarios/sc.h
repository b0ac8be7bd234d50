/*
 * Shared by the parts of the scenario client (sc.c: helpers, TCP/UDP and
 * syscall modes, main; raw.c: raw and AF_PACKET sockets; uring.c:
 * io_uring). See sc.c for the program's interface.
 */
#ifndef SC_H
#define SC_H
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

/* The peer's addresses and the scenario's port (argv). */
extern const char *server4, *server6;
extern int port;
/* A scratch buffer for payloads and reads. */
extern char buf[65536];

void die(const char *what);
struct sockaddr_in sin4(const char *addr, int p);
struct sockaddr_in6 sin6(const char *addr, int p);
/* SO_RCVTIMEO of `ms` milliseconds. */
void timeout(int fd, int ms);
int tcp_to(int v6, const char *addr, int p);
void tcp_cmd(int fd, char cmd, uint64_t count);
size_t read_to_eof(int fd);

/* raw.c */
void icmp_echo(int v6, int count, int payload);
void raw_proto(int proto, int count, int payload);
void raw_hdrincl(int count, int payload);
void sctp_init(void);
void af_packet(const char *ifname, const char *dst_mac, int count);

/* uring.c */
void uring_send(size_t bytes);
void uring_recv(size_t bytes);

#endif
