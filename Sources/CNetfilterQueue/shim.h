#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
