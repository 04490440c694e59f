/* update.c: the optimizer's update over the flat parameter buffer (the rule and its
 * settings are optim.c's). */
#include <math.h>
#include "cpu.h"

CLONED double sum_squares(const real *g, size_t n) {
    double sq = 0;
    #pragma omp parallel for reduction(+ : sq) schedule(static)
    for (size_t i = 0; i < n; i++) sq += (double)g[i] * g[i];
    return sq;
}

CLONED void optimizer_update(real *params, real *m_, real *v_, real *avg, const real *grads, size_t n,
                      double clip, double lr, double b1, double b2, double eps, double c1,
                      double c2, double decay, int adamax) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double g = grads[i] * clip;
        double m = b1 * m_[i] + (1 - b1) * g, v;
        if (adamax) {
            v = fmax(b2 * v_[i], fabs(g));
            params[i] -= (real)(lr / c1 * m / (v + eps));
        } else {
            v = b2 * v_[i] + (1 - b2) * g * g;
            params[i] -= (real)(lr * (m / c1) / (sqrt(v / c2) + eps));
        }
        m_[i] = (real)m;
        v_[i] = (real)v;
        avg[i] = (real)(decay * avg[i] + (1 - decay) * params[i]);
    }
}
