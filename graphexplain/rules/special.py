"""Special functions (torch.special and friends), elementwise.

Each forward is sympy's own special function, so sympy knows its derivative
(d loggamma = polygamma(0, ·), d besseli(0, ·) = besseli(1, ·)) and scipy
computes the numbers. Where torch's scaled variant (i0e, erfcx) or standard
normal form (ndtri, log_ndtr) has no sympy name, the formula builds it from
the plain function, as its definition does.

Singular points come out as torch has them: ``-self*log(self)`` (entr) has
the derivative ``-log(self) - 1``, infinite at 0 and nan below it, which is
what torch computes there.
"""

from .kinds import Pointwise

# x*log(y), and 0 where x is 0 and the log is not finite: torch's xlogy(0, 0)
# is 0, and so is its gradient for x there. (Its gradient for y at x = y = 0
# is 0/0, nan, in torch; the 0 branch gives 0.)
XLOGY = "Piecewise((0, Eq(self, 0) & (other <= 0)), (self*log(other), True))"
XLOG1PY = "Piecewise((0, Eq(self, 0) & (other <= -1)), (self*log1p(other), True))"
POLYGAMMA = "polygamma(n, self)"

ROWS = (
    Pointwise("ErfBackward0", "error function", "erf(self)"),
    Pointwise("ErfcBackward0", "complementary error function", "erfc(self)"),
    Pointwise("ErfinvBackward0", "inverse error function", "erfinv(self)"),
    Pointwise("SpecialErfcxBackward0", "scaled complementary error function", "exp(self**2)*erfc(self)"),
    Pointwise("SpecialNdtriBackward0", "inverse of the normal CDF", "sqrt(2)*erfinv(2*self - 1)"),
    Pointwise("SpecialLogNdtrBackward0", "log of the normal CDF", "log(ndtr(self))"),
    Pointwise("LgammaBackward0", "log of the gamma function", "loggamma(self)"),
    Pointwise("DigammaBackward0", "digamma", "polygamma(0, self)"),
    Pointwise("PolygammaBackward0", "polygamma of order n", POLYGAMMA, params=("n",)),
    # x.polygamma_(n): torch keeps a copy of the input.
    Pointwise("PolygammaBackward1", "polygamma of order n in place", POLYGAMMA, params=("n",)),
    # log of the multivariate gamma function of dimension p; the sum runs over
    # the saved int p (Note [sums over a saved count] in derive/formula.py).
    Pointwise("MvlgammaBackward0", "multivariate log-gamma",
              "p*(p - 1)/4*log(pi) + Sum(loggamma(self - j/2), (j, 0, p - 1))", params=("p",)),
    Pointwise("I0Backward0", "modified Bessel function I0", "besseli(0, self)"),
    Pointwise("SpecialI0EBackward0", "scaled modified Bessel function I0", "exp(-Abs(self))*besseli(0, self)"),
    Pointwise("SpecialI1Backward0", "modified Bessel function I1", "besseli(1, self)"),
    Pointwise("SpecialI1EBackward0", "scaled modified Bessel function I1", "exp(-Abs(self))*besseli(1, self)"),
    # entropy term; torch's gradient is this formula's derivative everywhere.
    Pointwise("SpecialEntrBackward0", "entropy term", "-self*log(self)"),
    # sin(pi x)/(pi x), 1 at 0 (and flat there, as torch has it).
    Pointwise("SincBackward0", "normalized sinc", "Piecewise((1, Eq(self, 0)), (sin(pi*self)/(pi*self), True))"),
    Pointwise("XlogyBackward0", "x log y", XLOGY, ("self", "other")),
    Pointwise("XlogyBackward1", "number times log y", XLOGY, ("other",), ("self",)),
    Pointwise("XlogyBackward2", "x log of a number", XLOGY, ("self",), ("other",)),
    Pointwise("SpecialXlog1PyBackward0", "x log(1 + y)", XLOG1PY, ("self", "other")),
    Pointwise("SpecialXlog1PyBackward1", "number times log(1 + y)", XLOG1PY, ("other",), ("self",)),
    Pointwise("SpecialXlog1PyBackward2", "x log(1 + a number)", XLOG1PY, ("self",), ("other",)),
    # log(self/(1 - self)), its input first clamped to [eps, 1 - eps]; torch
    # reads eps None (or below 0) as no clamping.
    Pointwise(
        "LogitBackward0", "logit",
        "Piecewise((log(self/(1 - self)), (eps < 0) | ((self >= eps) & (self <= 1 - eps))),"
        " (log(eps/(1 - eps)), self < eps), (log((1 - eps)/eps), True))",
        params=("eps",), defaults=(("eps", -1.0),),
    ),
)
