// The one terminal call Swift cannot make: ioctl is variadic, and Swift imports no variadic C function.
// Nothing else belongs here (termios calls are imported as they are).
#ifndef STEPFLOW_CTERMINAL_H
#define STEPFLOW_CTERMINAL_H

/// The size of the terminal on `fd` (TIOCGWINSZ): 0 with rows and columns set, -1 (errno set) when
/// `fd` is not a terminal or the terminal does not say.
int stepflow_terminal_size(int fd, int *rows, int *columns);

#endif
