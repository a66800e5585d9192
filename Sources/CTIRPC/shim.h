// libtirpc: rpcbind/portmapper registration (rpcb_set, rpcb_unset, pmap_set) and
// getnetconfigent for the transports we register.
#include <rpc/rpc.h>
#include <rpc/pmap_clnt.h>
#include <rpc/rpcb_clnt.h>
#include <netconfig.h>
