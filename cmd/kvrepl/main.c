/* kvrepl: moves partition data between kvnodes and clusters (see kvrepl(1)). */
#include "kvrepl.h"
#include "kv_util.h"
#include <stdio.h>

int main(int argc, char **argv)
{
    kv_progname = "kvrepl";
    (void) argc;
    (void) argv;
    return KR_EXIT_OK;
}
