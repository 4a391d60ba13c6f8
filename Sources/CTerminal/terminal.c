#include "CTerminal.h"
#include <errno.h>
#include <sys/ioctl.h>

int stepflow_terminal_size(int fd, int *rows, int *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -1;
    if (size.ws_row == 0 || size.ws_col == 0) {
        errno = ENOTTY;
        return -1;
    }
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}
