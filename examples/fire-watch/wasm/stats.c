// Summarises temperature readings (one number per line, in degrees C) from input/temps.txt.
// Writes "readings=N min=A max=B mean=C" to out.txt and to stats.txt (published as named data for the
// next job), and a line per reading above 50 C to stdout. Exits 2 if the input is missing or empty,
// 4 if a line is not a number.
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  FILE *in = fopen("input/temps.txt", "r");
  if (in == NULL) {
    perror("stats: input/temps.txt");
    return 2;
  }
  char line[128];
  int n = 0;
  double min = 0, max = 0, sum = 0;
  while (fgets(line, sizeof line, in) != NULL) {
    char *end;
    double t = strtod(line, &end);
    if (end == line) {
      if (line[0] == '\n') continue;
      fprintf(stderr, "stats: not a number on reading %d: %s", n + 1, line);
      return 4;
    }
    if (n == 0 || t < min) min = t;
    if (n == 0 || t > max) max = t;
    sum += t;
    n++;
    if (t > 50.0) printf("hot reading %d: %.1f C\n", n, t);
  }
  fclose(in);
  if (n == 0) {
    fprintf(stderr, "stats: no readings\n");
    return 2;
  }
  const char *files[] = {"out.txt", "stats.txt"};
  for (int i = 0; i < 2; i++) {
    FILE *out = fopen(files[i], "w");
    if (out == NULL) {
      perror(files[i]);
      return 3;
    }
    fprintf(out, "readings=%d min=%.1f max=%.1f mean=%.1f\n", n, min, max, sum / n);
    fclose(out);
  }
  fprintf(stderr, "stats: %d readings\n", n);
  return 0;
}
