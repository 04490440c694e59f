/* attributes.c (placeholder while written) */
#include "cli.h"
int cmd_attributes(int argc, char **argv) { return cli_error("not yet"); }
int cmd_manipulate(int argc, char **argv) { return cli_error("not yet"); }
