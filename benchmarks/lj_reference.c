/*
 * The particle kernel's loops written directly in C: the yardstick for cython_kernel.
 *
 * The same operations in the same order as elastic/kernels/python_kernel.py, so with
 * `cc -O3 -ffp-contract=off` it ends on the same bits as the Cython kernel.
 *
 * Usage: lj_reference STATE_FILE REPEATS
 *   STATE_FILE: a line "N box_length cutoff dt num_steps", then N lines "x y vx vy",
 *               every float in C99 hex ("%a"), as benchmarks/bench_kernels.py writes it.
 * It integrates num_steps steps REPEATS times from the same state and prints
 * "seconds <best wall time>", "potential_energy <hex>", then one line "vx vy" (hex)
 * per particle: the velocities after the last run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double pair_forces(long count, const double *x, double *f, double box, double cutoff)
{
    double cutoff_sq = cutoff * cutoff;
    double inv_rc2 = 1.0 / (cutoff * cutoff);
    double inv_rc6 = inv_rc2 * inv_rc2 * inv_rc2;
    double energy_shift = 4.0 * (inv_rc6 * inv_rc6 - inv_rc6);
    double energy = 0.0;
    memset(f, 0, sizeof(double) * 2 * count);
    for (long i = 0; i < count; i++) {
        double xi = x[2 * i], yi = x[2 * i + 1];
        double fxi = f[2 * i], fyi = f[2 * i + 1];
        for (long j = i + 1; j < count; j++) {
            double dx = xi - x[2 * j];
            dx -= box * floor(dx / box + 0.5);
            double dy = yi - x[2 * j + 1];
            dy -= box * floor(dy / box + 0.5);
            double r2 = dx * dx + dy * dy;
            if (r2 < cutoff_sq) {
                double inv_r2 = 1.0 / r2;
                double inv_r6 = inv_r2 * inv_r2 * inv_r2;
                double magnitude = 24.0 * (2.0 * inv_r6 * inv_r6 - inv_r6) * inv_r2;
                double pair_fx = magnitude * dx;
                double pair_fy = magnitude * dy;
                fxi += pair_fx;
                fyi += pair_fy;
                f[2 * j] -= pair_fx;
                f[2 * j + 1] -= pair_fy;
                energy += 4.0 * (inv_r6 * inv_r6 - inv_r6) - energy_shift;
            }
        }
        f[2 * i] = fxi;
        f[2 * i + 1] = fyi;
    }
    return energy;
}

static double integrate_steps(long count, double *x, double *v, double *f, double box,
                              double cutoff, double dt, long num_steps)
{
    double energy = NAN;
    for (long step = 0; step < num_steps; step++) {
        for (long k = 0; k < 2 * count; k++)
            v[k] += 0.5 * dt * f[k];
        for (long k = 0; k < 2 * count; k++) {
            double moved = x[k] + dt * v[k];
            x[k] = moved - box * floor(moved / box);
        }
        energy = pair_forces(count, x, f, box, cutoff);
        for (long k = 0; k < 2 * count; k++)
            v[k] += 0.5 * dt * f[k];
    }
    return energy;
}

static double read_double(FILE *in)
{
    char word[64];
    if (fscanf(in, "%63s", word) != 1) {
        fprintf(stderr, "lj_reference: state file ends early\n");
        exit(2);
    }
    return strtod(word, NULL);
}

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: lj_reference STATE_FILE REPEATS\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (in == NULL) {
        perror(argv[1]);
        return 2;
    }
    long count = (long)read_double(in);
    double box = read_double(in), cutoff = read_double(in), dt = read_double(in);
    long num_steps = (long)read_double(in), repeats = atol(argv[2]);
    size_t size = sizeof(double) * 2 * count;
    double *x0 = malloc(size), *v0 = malloc(size), *x = malloc(size), *v = malloc(size);
    double *f = malloc(size);
    for (long k = 0; k < count; k++) {
        x0[2 * k] = read_double(in);
        x0[2 * k + 1] = read_double(in);
        v0[2 * k] = read_double(in);
        v0[2 * k + 1] = read_double(in);
    }
    fclose(in);
    double best = INFINITY, energy = NAN;
    for (long run = 0; run < repeats; run++) {
        memcpy(x, x0, size);
        memcpy(v, v0, size);
        pair_forces(count, x, f, box, cutoff);
        double started = seconds_now();
        energy = integrate_steps(count, x, v, f, box, cutoff, dt, num_steps);
        double took = seconds_now() - started;
        best = took < best ? took : best;
    }
    printf("seconds %.9f\npotential_energy %a\n", best, energy);
    for (long k = 0; k < count; k++)
        printf("%a %a\n", v[2 * k], v[2 * k + 1]);
    free(x0); free(v0); free(x); free(v); free(f);
    return 0;
}
