#ifndef TEXTKIT_REVERSE_H
#define TEXTKIT_REVERSE_H
/* Reverses s in place; returns s. */
char *tk_reverse(char *s);
#endif
