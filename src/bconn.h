/* bconn.h: the beanstalk listener: connections that speak beanstalkd 1.12's
 * protocol (bproto.h) to the same broker core as the native ones, so a tube
 * and a topic of the same name are one queue (docs/beanstalk.md).
 */
#ifndef SLUICE_BCONN_H
#define SLUICE_BCONN_H

#include "connhost.h"

/* The beanstalk protocol, for server_listen (config's beanstalk.listen).
 * Its connections are its own (not the server's list): the server reaches
 * them through the protocol's configure, stop_reading, drained and
 * close_all hooks. One server per process serves it. */
extern const connproto_t bconn_proto;

#endif
