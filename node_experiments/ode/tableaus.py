"""Butcher tableaus as data: every solver method is one of these driving the one stepper.

A tableau holds the coefficients of an explicit Runge-Kutta method (Butcher 2016, "Numerical Methods for
Ordinary Differential Equations", ch. 2), the weights of its embedded error estimate when it is adaptive, and
the weights of its dense output (continuous extension), so that ``runge_kutta.py`` never needs to know which
method it runs.

Dense output convention (shared by every method): after a step of size ``h`` from ``(t, y)`` with stage
derivatives ``k_0 .. k_{S-1}``, the solution at ``t + theta * h`` (``0 <= theta <= 1``) is

    y(t + theta h) = y + h * sum_j k_j * sum_p interpolation[j][p] * theta ** (p + 1)

``interpolation`` has ``S`` rows, or ``S + 1`` rows where the last row multiplies ``f(t + h, y_new)`` (the
derivative at the end of the step, which is the first stage of the next step). At ``theta = 1`` the weights
sum to ``b`` (with zero for the extra row), so dense output is continuous with the step.

Methods (``TABLEAUS`` maps each name to its tableau; each is also a module constant with its own docstring and
``source``): adaptive ``dopri5``, ``tsit5``, ``bosh3``, ``fehlberg2``, ``adaptive_heun``, ``dopri8``; fixed-step
``euler``, ``midpoint``, ``heun``, ``heun3``, ``rk4``. Coefficients are written as the published exact rationals or decimals
and kept as ``fractions.Fraction`` until the final rounding to float, so ``b_error = b - b_hat`` and the derived
dense-output matrices carry no intermediate rounding. Methods without a continuous extension of their own use cubic
Hermite interpolation (``hermite_interpolation``, from the solver ``fit_dense_output``); dopri8 uses a degree-6
continuous extension over its stages and the end derivative.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of one explicit Runge-Kutta method.

    Attributes:
        name: the method's name in ``odeint(..., method=name)``.
        c: stage times, length S.
        a: the strictly lower-triangular stage matrix as rows; row i has i entries (row 0 is empty).
        b: weights of the propagated solution, length S.
        order: order of the propagated solution.
        b_error: ``b - b_hat`` (the embedded solution's weights subtracted), length S; ``None`` for fixed-step
            methods. The local error estimate is ``h * sum_j b_error[j] * k_j``.
        error_order: order of the embedded solution ``b_hat`` (``None`` for fixed-step methods).
        fsal: first-same-as-last: the last stage is evaluated at ``(t + h, y_new)``, so it is the next
            step's first stage and costs nothing.
        interpolation: dense output weights, see the module docstring.
        source: where the coefficients come from.
        stiffness_boundary: the threshold on ``h * |lambda|`` of Hairer's stiffness test (``stiffness.py``), a little
            inside the method's stability boundary on the negative real axis; ``None`` where the method is not
            tested (the test needs its last two stages at the same time, ``c = 1``).
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_error: tuple[float, ...] | None
    error_order: int | None
    fsal: bool
    interpolation: tuple[tuple[float, ...], ...]
    source: str
    stiffness_boundary: float | None = None

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None


# ----------------------------------------------------------------------------------------------------------------
# Building tableaus from published coefficients.
#
# Coefficients are written as strings, either exact rationals ("35/384") or the published decimals ("0.161", or a
# long expansion), parsed into ``fractions.Fraction`` so that derived quantities (``b_error = b - b_hat``, the
# dense-output matrices) are computed exactly and rounded to float only once, at the end.
# ----------------------------------------------------------------------------------------------------------------


def _q(x: str | int | Fraction) -> Fraction:
    """One coefficient as an exact fraction: ``"35/384"``, ``"-.848e-2"``, ``1`` or a ``Fraction``."""
    return Fraction(x)


def _vector(xs) -> tuple[Fraction, ...]:
    return tuple(_q(x) for x in xs)


def _to_float(xs) -> tuple[float, ...]:
    return tuple(float(x) for x in xs)


def _solve(matrix: list[list[Fraction]], rhs: list[list[Fraction]]) -> list[list[Fraction]]:
    """Solve ``matrix @ X = rhs`` exactly by Gauss-Jordan elimination (``matrix`` square and invertible)."""
    n = len(matrix)
    rows = [list(matrix[i]) + list(rhs[i]) for i in range(n)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        p = rows[col][col]
        rows[col] = [v / p for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [v - factor * w for v, w in zip(rows[r], rows[col])]
    return [row[n:] for row in rows]


def fit_dense_output(
    conditions: list[tuple[Fraction, bool, tuple[Fraction, ...]]],
) -> tuple[tuple[Fraction, ...], ...]:
    """The interpolation matrix (module docstring convention) of the polynomial fixed by linear conditions.

    Each condition ``(theta, derivative, weights)`` prescribes, in terms of the stage derivatives ``k_j`` (and
    ``f(t + h, y_new)`` as the last entry where there is one),

        (y(t + theta h) - y) / h = sum_j weights[j] k_j     if not derivative,
        (d/dtheta y(t + theta h)) / h = sum_j weights[j] k_j      if derivative.

    With ``n`` conditions the polynomial has degree ``n`` in theta (its constant term is ``y``); the result has one
    row per stage weight and ``n`` columns, the coefficients of ``theta ** 1 .. theta ** n``.
    """
    degree = len(conditions)
    n_rows = len(conditions[0][2])
    if any(len(w) != n_rows for _, _, w in conditions):
        raise ValueError("every dense-output condition needs one weight per stage")
    # One equation per condition: the basis theta ** (p + 1), or its derivative, at the condition's theta.
    system = [
        [(p + 1) * theta**p if derivative else theta ** (p + 1) for p in range(degree)]
        for theta, derivative, _ in conditions
    ]
    rhs = [list(weights) for _, _, weights in conditions]
    solution = _solve(system, rhs)  # solution[p][j]: coefficient of theta ** (p + 1) for stage j
    return tuple(tuple(solution[p][j] for p in range(degree)) for j in range(n_rows))


def _endpoint_conditions(b: tuple[Fraction, ...], fsal: bool):
    """y'(0) = f0 = k_0, y(1) = y_new, y'(1) = f1: the conditions every dense output here shares.

    ``f1`` is the last stage for an FSAL method, else an extra entry after the stages.
    """
    n_rows = len(b) if fsal else len(b) + 1

    def unit(j: int) -> tuple[Fraction, ...]:
        return tuple(Fraction(int(i == j)) for i in range(n_rows))

    b_padded = tuple(b) + (Fraction(0),) * (n_rows - len(b))
    return [(Fraction(0), True, unit(0)), (Fraction(1), False, b_padded), (Fraction(1), True, unit(n_rows - 1))]


def hermite_interpolation(b, fsal: bool) -> tuple[tuple[Fraction, ...], ...]:
    """Cubic Hermite dense output through ``y0, y1, f0 = k_0, f1 = f(t + h, y1)`` for a method with weights ``b``.

    Third-order accurate in theta (local error O(h^4)) when the step itself is at least third order. ``S`` rows
    for an FSAL method (its last stage is ``f1``), ``S + 1`` otherwise.
    """
    return fit_dense_output(_endpoint_conditions(_vector(b), fsal))


def _make(
    name: str,
    *,
    c,
    a,
    b,
    order: int,
    source: str,
    b_hat=None,
    error_order: int | None = None,
    fsal: bool = False,
    interpolation=None,
    stiffness_boundary: float | None = None,
) -> ButcherTableau:
    """Assemble a tableau from exact coefficients; the dense output defaults to cubic Hermite."""
    c, b = _vector(c), _vector(b)
    a = tuple(_vector(row) for row in a)
    if b_hat is None:
        b_error = None
    else:
        b_error = _to_float(bi - bh for bi, bh in zip(b, _vector(b_hat), strict=True))
    if interpolation is None:
        interpolation = hermite_interpolation(b, fsal)
    return ButcherTableau(
        name=name,
        c=_to_float(c),
        a=tuple(_to_float(row) for row in a),
        b=_to_float(b),
        order=order,
        b_error=b_error,
        error_order=error_order,
        fsal=fsal,
        interpolation=tuple(_to_float(_vector(row)) for row in interpolation),
        source=source,
        stiffness_boundary=stiffness_boundary,
    )


# ----------------------------------------------------------------------------------------------------------------
# Adaptive methods.
# ----------------------------------------------------------------------------------------------------------------

DOPRI5 = _make(
    "dopri5",
    c=["0", "1/5", "3/10", "4/5", "8/9", "1", "1"],
    a=[
        [],
        ["1/5"],
        ["3/40", "9/40"],
        ["44/45", "-56/15", "32/9"],
        ["19372/6561", "-25360/2187", "64448/6561", "-212/729"],
        ["9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656"],
        ["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84"],
    ],
    b=["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84", "0"],
    order=5,
    b_hat=["5179/57600", "0", "7571/16695", "393/640", "-92097/339200", "187/2100", "1/40"],
    error_order=4,
    fsal=True,
    # Shampine's 4th-order continuous extension (degree 4), the dense output of Hairer's DOPRI5 and scipy's RK45.
    interpolation=[
        ["1", "-8048581381/2820520608", "8663915743/2820520608", "-12715105075/11282082432"],
        ["0", "0", "0", "0"],
        ["0", "131558114200/32700410799", "-68118460800/10900136933", "87487479700/32700410799"],
        ["0", "-1754552775/470086768", "14199869525/1410260304", "-10690763975/1880347072"],
        ["0", "127303824393/49829197408", "-318862633887/49829197408", "701980252875/199316789632"],
        ["0", "-282668133/205662961", "2019193451/616988883", "-1453857185/822651844"],
        ["0", "40617522/29380423", "-110615467/29380423", "69997945/29380423"],
    ],
    # Hairer's DOPRI5 threshold; the stability boundary on the negative real axis is 3.307.
    stiffness_boundary=3.25,
    source=(
        "J. R. Dormand and P. J. Prince, 'A family of embedded Runge-Kutta formulae', J. Comput. Appl. Math. 6(1) "
        "19-26 (1980), with its b_hat as in scipy's RK45 and Hairer's DOPRI5; dense output: L. F. Shampine, 'Some "
        "practical Runge-Kutta formulas', Math. Comp. 46(173) 135-150 (1986), as in Hairer, Norsett & Wanner, "
        "Solving ODEs I (2nd ed.), Sec. II.6"
    ),
)
"""Dormand-Prince 5(4) (DOPRI5): 7 stages, FSAL, propagates the 5th-order solution with a 4th-order embedded
estimate (Dormand & Prince 1980). Dense output: Shampine's (1986) 4th-order continuous extension of degree 4, the
one Hairer's DOPRI5 code and ``scipy.integrate.RK45`` use."""

# Tsitouras (2011), with the coefficients in the high-precision decimals OrdinaryDiffEq.jl lists for them.
_TSIT5_B = [
    ".9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1",
    "1/100",
    ".4798896504144995747752495322905965199130404621990332488332634944254542060153074523509",
    "1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331",
    "-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677",
    "2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841",
]

TSIT5 = _make(
    "tsit5",
    c=["0", "161/1000", "327/1000", "9/10",
       ".9800255409045096857298102862870245954942137979563024768854764293221195950761080302604", "1", "1"],
    a=[
        [],
        ["161/1000"],
        ["-.8480655492356988544426874250230774675121177393430391537369234245294192976164141156943e-2",
         ".3354806554923569885444268742502307746751211773934303915373692342452941929761641411569"],
        ["2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289",
         "-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366",
         "4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077"],
        ["5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791",
         "-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589",
         "7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753",
         "-.9249506636175524925650207933207191611349983406029535244034750452930469056411389539635e-1"],
        ["5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748",
         "-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452",
         "8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986",
         "-.7158497328140099722453054252582973869127213147363544882721139659546372402303777878835e-1",
         "-.2826905039406838290900305721271224146717633626879770007617876201276764571291579142206e-1"],
        _TSIT5_B,
    ],
    b=_TSIT5_B + ["0"],
    order=5,
    b_hat=[
        ".9468075576583945807478876255758922856117527357724631226139574065785592789071067303271e-1",
        ".9183565540343253096776363936645313759813746240984095238905939532922955247253608687270e-2",
        ".4877705284247615707855642599631228241516691959761363774365216240304071651579571959813",
        "1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761",
        "-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702",
        "1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089",
        "1/66",
    ],
    error_order=4,
    fsal=True,
    # Tsitouras' interpolant b_i(theta) = sum_p r_ip theta^p, p = 1..4 (Tsitouras 2011, expanded form; decimals
    # as in OrdinaryDiffEq.jl). r_11 is exactly 1 (the listing's 0.99999999999999997428 is that value rounded), so
    # that dy/dtheta(0) = h f0 holds exactly.
    interpolation=[
        ["1", "-2.763706197274825911336735930481400260916070804192",
         "2.91325546182191274375068099306808", "-1.0530884977290216"],
        ["0", "0.13169999999999999727", "-0.22339999999999999818", "0.1017"],
        ["0", "3.93029623689475152850687446709813398", "-5.94103387213150473470249202589458001",
         "2.490627285651252793"],
        ["0", "-12.411077166933676983734381540685453484102414134010752", "30.3381886302823215981729903691836576",
         "-16.54810288924490272"],
        ["0", "37.50931341651103919496903965334519631242339792120440212", "-88.1789048947664011014276693541209817",
         "47.37952196281928122"],
        ["0", "-27.896526289197287805948263144598643896", "65.09189467479367152629021928716553658",
         "-34.87065786149660974"],
        ["0", "3/2", "-4", "5/2"],
    ],
    # Its stability boundary on the negative real axis is 3.507; Hairer's margin (3.25 for dopri5's 3.307) applied.
    stiffness_boundary=3.45,
    source=(
        "Ch. Tsitouras, 'Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying "
        "assumption', Comput. Math. Appl. 62(2) 770-775 (2011); high-precision decimals as in OrdinaryDiffEq.jl"
    ),
)
"""Tsitouras 5(4) (Tsit5): 7 stages, FSAL, 5th-order propagated solution with a 4th-order embedded estimate,
derived without the row simplifying assumptions (Tsitouras 2011). Dense output: Tsitouras' own 4th-order
interpolant, degree 4."""

BOSH3 = _make(
    "bosh3",
    c=["0", "1/2", "3/4", "1"],
    a=[[], ["1/2"], ["0", "3/4"], ["2/9", "1/3", "4/9"]],
    b=["2/9", "1/3", "4/9", "0"],
    order=3,
    b_hat=["7/24", "1/4", "1/3", "1/8"],
    error_order=2,
    fsal=True,
    source=(
        "P. Bogacki and L. F. Shampine, 'A 3(2) pair of Runge-Kutta formulas', Appl. Math. Lett. 2(4) 321-325 "
        "(1989)"
    ),
)
"""Bogacki-Shampine 3(2): 4 stages, FSAL, 3rd-order propagated solution with a 2nd-order embedded estimate
(Bogacki & Shampine 1989; MATLAB's ode23). Dense output: cubic Hermite (``hermite_interpolation``)."""

FEHLBERG2 = _make(
    "fehlberg2",
    c=["0", "1/2", "1"],
    a=[[], ["1/2"], ["1/256", "255/256"]],
    b=["1/512", "255/256", "1/512"],
    order=2,
    b_hat=["1/256", "255/256", "0"],
    error_order=1,
    fsal=False,
    source=(
        "E. Fehlberg, 'Low-order classical Runge-Kutta formulas with stepsize control and their application to "
        "some heat transfer problems', NASA Technical Report R-315 (1969): RKF1(2), propagated at order 2 as in "
        "torchdiffeq's fehlberg2"
    ),
)
"""Runge-Kutta-Fehlberg 2(1): Fehlberg's 3-stage RKF1(2) pair (Fehlberg 1969), propagating the 2nd-order solution
and using the 1st-order one for the error estimate, as torchdiffeq's ``fehlberg2`` does. The last stage is taken at
the 1st-order solution, so it is not FSAL here. Dense output: cubic Hermite with an extra ``f1`` row."""

# Heun's method (explicit trapezoidal rule); shared by the fixed-step `heun` and its embedded variant.
_HEUN_C = ["0", "1"]
_HEUN_A = [[], ["1"]]
_HEUN_B = ["1/2", "1/2"]
_HEUN_SOURCE = (
    "K. Heun, 'Neue Methoden zur approximativen Integration der Differentialgleichungen einer unabhaengigen "
    "Veraenderlichen', Z. Math. Phys. 45 (1900) 23-38; J. C. Butcher, Numerical Methods for Ordinary "
    "Differential Equations (3rd ed., 2016), Ch. 2"
)

ADAPTIVE_HEUN = _make(
    "adaptive_heun",
    c=_HEUN_C,
    a=_HEUN_A,
    b=_HEUN_B,
    order=2,
    b_hat=["1", "0"],
    error_order=1,
    source=_HEUN_SOURCE + "; explicit Euler as the embedded 1st-order solution",
)
"""Heun-Euler 2(1): Heun's 2nd-order method with the explicit Euler step embedded for the error estimate. Not FSAL.
Dense output: cubic Hermite with an extra ``f1`` row."""

# Prince & Dormand (1981), RK8(7)13M: the published rational approximations of the coefficients.
_DOPRI8_B = [
    "14005451/335480064", "0", "0", "0", "0", "-59238493/1068277825", "181606767/758867731",
    "561292985/797845732", "-1041891430/1371343529", "760417239/1151165299", "118820643/751138087",
    "-528747749/2220607170", "1/4",
]

# A continuous extension of RK8(7)13M over its 13 stages and f1, b_j(theta) = sum_p coef[j][p] theta^(p+1) (powers
# 1..6), as shipped with torchdiffeq's dopri8 (which only evaluates it at theta = 1/2, for a quartic fit). Used here
# as the dense output itself: on y' = y cos t it is about 100x more accurate between steps than that quartic.
_DOPRI8_MID_POLYNOMIALS = {
    0: ["1.0", "-6.6910181737837595697", "19.9990069333683970610", "-30.0610568289666450593",
        "22.1396504998094068976", "-6.3448349392860401388"],
    5: ["0", "-7.6142658045872677172", "52.2273532792945524050", "-121.4999627731334642623",
        "116.4422149550342161651", "-39.6107919852202505218"],
    6: ["0", "10.7281392630428866124", "-46.8919164181093621583", "83.1721004639847717481",
        "-67.1451318825957197185", "20.3761213808791436958"],
    7: ["0", "0.5526637063753648783", "-0.1890893225010595467", "9.5724507555993664382",
        "-16.5672243527496524646", "7.3347098826795362023"],
    8: ["0", "4.2186562625665153803", "-35.7075975946222072821", "87.8406057677205645007",
        "-89.9916014847245016028", "32.8801774352459155182"],
    9: ["0", "-0.6627209125361597559", "6.2736448083240352160", "-17.4152107770762969005",
        "22.6237489648532849093", "-10.1588990526426760954"],
    10: ["0", "-1.2636789001135462218", "10.3160881272450748458", "-28.5903289514790976966",
         "32.2362340167355370113", "-12.5401268098782561200"],
    11: ["0", "5.4106037898590422230", "-34.7650769866611817349", "81.6630950584341412934",
         "-82.1020315488359848644", "29.5553001484516038033"],
    12: ["0", "-7.0321379067945741781", "47.7457971078225540396", "-114.9375291377009418170",
         "116.2662185791119533462", "-41.7923486424390588923"],
    13: ["0", "2.3537586759714983486", "-19.0082099341608028453", "50.2558364226176017553",
         "-53.9020777466385396792", "20.3006925822100825485"],
}


def _evaluate_weights(polynomials: dict[int, list], n_rows: int, theta: Fraction) -> tuple[Fraction, ...]:
    """Weights ``b_j(theta) = sum_p coef[j][p] theta ** (p + 1)`` of a continuous extension given row by row."""
    return tuple(
        sum((_q(coef) * theta ** (p + 1) for p, coef in enumerate(polynomials.get(j, []))), Fraction(0))
        for j in range(n_rows)
    )


def _exact_at_step_end(polynomials: dict[int, list], b) -> tuple[tuple[Fraction, ...], ...]:
    """Interpolation rows from published (rounded) polynomial weights, with each row's two top coefficients
    corrected by the rounding residuals (about 1e-11 here) of the two end conditions the extension satisfies in
    exact arithmetic: the weights at theta = 1 are ``b`` (dense output meets the step's end) and the theta-slope at 1
    is ``f1`` alone (dense output is C^1 across steps)."""
    rows = []
    for j, b_j in enumerate(b):
        row = [_q(coef) for coef in polynomials.get(j, ["0"] * 6)]
        value_residual = b_j - sum(row)
        slope_residual = (1 if j == len(b) - 1 else 0) - sum((p + 1) * coef for p, coef in enumerate(row))
        # d5 + d6 = value residual, 5 d5 + 6 d6 = slope residual.
        d6 = slope_residual - 5 * value_residual
        row[-2] += value_residual - d6
        row[-1] += d6
        rows.append(tuple(row))
    return tuple(rows)


_DOPRI8_MID_EXACT = _evaluate_weights(_DOPRI8_MID_POLYNOMIALS, 14, Fraction(1, 2))
DOPRI8_MID = _to_float(_DOPRI8_MID_EXACT)
"""Weights giving ``y(t + h/2) = y + h * sum_j DOPRI8_MID[j] k_j`` for dopri8 (13 stages, then ``f1``)."""

DOPRI8 = _make(
    "dopri8",
    c=["0", "1/18", "1/12", "1/8", "5/16", "3/8", "59/400", "93/200", "5490023248/9719169821", "13/20",
       "1201146811/1299019798", "1", "1"],
    a=[
        [],
        ["1/18"],
        ["1/48", "1/16"],
        ["1/32", "0", "3/32"],
        ["5/16", "0", "-75/64", "75/64"],
        ["3/80", "0", "0", "3/16", "3/20"],
        ["29443841/614563906", "0", "0", "77736538/692538347", "-28693883/1125000000", "23124283/1800000000"],
        ["16016141/946692911", "0", "0", "61564180/158732637", "22789713/633445777", "545815736/2771057229",
         "-180193667/1043307555"],
        ["39632708/573591083", "0", "0", "-433636366/683701615", "-421739975/2616292301", "100302831/723423059",
         "790204164/839813087", "800635310/3783071287"],
        ["246121993/1340847787", "0", "0", "-37695042795/15268766246", "-309121744/1061227803",
         "-12992083/490766935", "6005943493/2108947869", "393006217/1396673457", "123872331/1001029789"],
        ["-1028468189/846180014", "0", "0", "8478235783/508512852", "1311729495/1432422823",
         "-10304129995/1701304382", "-48777925059/3047939560", "15336726248/1032824649",
         "-45442868181/3398467696", "3065993473/597172653"],
        ["185892177/718116043", "0", "0", "-3185094517/667107341", "-477755414/1098053517",
         "-703635378/230739211", "5731566787/1027545527", "5232866602/850066563", "-4093664535/808688257",
         "3962137247/1805957418", "65686358/487910083"],
        ["403863854/491063109", "0", "0", "-5068492393/434740067", "-411421997/543043805",
         "652783627/914296604", "11173962825/925320556", "-13158990841/6184727034", "3936647629/1978049680",
         "-160528059/685178525", "248638103/1413531060", "0"],
    ],
    b=_DOPRI8_B,
    order=8,
    b_hat=["13451932/455176623", "0", "0", "0", "0", "-808719846/976000145", "1757004468/5645159321",
           "656045339/265891186", "-3867574721/1518517206", "465885868/322736535", "53011238/667516719",
           "2/45", "0"],
    error_order=7,
    fsal=False,
    interpolation=_exact_at_step_end(_DOPRI8_MID_POLYNOMIALS, (*_vector(_DOPRI8_B), Fraction(0))),
    source=(
        "P. J. Prince and J. R. Dormand, 'High order embedded Runge-Kutta formulae', J. Comput. Appl. Math. 7(1) "
        "67-75 (1981), method RK8(7)13M (published rational approximations); midpoint weights as in torchdiffeq's "
        "dopri8"
    ),
)
"""Dormand-Prince 8(7), RK8(7)13M (Prince & Dormand 1981): 13 stages, not FSAL, 8th-order propagated solution
with a 7th-order embedded estimate. Dense output: the degree-6 continuous extension over the 13 stages and ``f1``
(``S + 1`` rows), lower in order than the steps, so intermediate output times are less accurate than step ends."""

# ----------------------------------------------------------------------------------------------------------------
# Fixed-step methods (no error estimate); dense output is cubic Hermite with an extra f1 row.
# ----------------------------------------------------------------------------------------------------------------

_CLASSICAL_SOURCE = (
    "J. C. Butcher, Numerical Methods for Ordinary Differential Equations (3rd ed., 2016), Ch. 2; Hairer, "
    "Norsett & Wanner, Solving ODEs I (2nd ed.), Sec. II.1"
)

EULER = _make("euler", c=["0"], a=[[]], b=["1"], order=1, source="L. Euler (1768); " + _CLASSICAL_SOURCE)
"""Explicit Euler: one stage, 1st order."""

MIDPOINT = _make(
    "midpoint",
    c=["0", "1/2"],
    a=[[], ["1/2"]],
    b=["0", "1"],
    order=2,
    source="C. Runge, Math. Ann. 46 (1895) 167-178; " + _CLASSICAL_SOURCE,
)
"""Explicit midpoint rule (Runge 1895): two stages, 2nd order."""

HEUN = _make("heun", c=_HEUN_C, a=_HEUN_A, b=_HEUN_B, order=2, source=_HEUN_SOURCE)
"""Heun's method (explicit trapezoidal rule): two stages, 2nd order, ``c = [0, 1]``. torchdiffeq calls it ``heun2``."""

HEUN3 = _make(
    "heun3",
    c=["0", "1/3", "2/3"],
    a=[[], ["1/3"], ["0", "2/3"]],
    b=["1/4", "0", "3/4"],
    order=3,
    source=_HEUN_SOURCE,
)
"""Heun's third-order method (Heun 1900): three stages, 3rd order, ``c = [0, 1/3, 2/3]``."""

RK4 = _make(
    "rk4",
    c=["0", "1/2", "1/2", "1"],
    a=[[], ["1/2"], ["0", "1/2"], ["0", "0", "1"]],
    b=["1/6", "1/3", "1/3", "1/6"],
    order=4,
    source="W. Kutta, Z. Math. Phys. 46 (1901) 435-453; " + _CLASSICAL_SOURCE,
)
"""The classical 4th-order Runge-Kutta method (Kutta 1901): four stages."""

TABLEAUS: dict[str, ButcherTableau] = {
    tableau.name: tableau
    for tableau in (DOPRI5, TSIT5, BOSH3, FEHLBERG2, ADAPTIVE_HEUN, DOPRI8, EULER, MIDPOINT, HEUN, HEUN3, RK4)
}
"""Every method of the solver by name: the six adaptive ones, then the five fixed-step ones."""


def linear_interpolation(tableau: ButcherTableau) -> ButcherTableau:
    """``tableau`` with its dense output replaced by linear interpolation between the step's ends.

    ``y + theta * (y_new - y) = y + h * sum_j (theta * b_j) k_j``: one column, the weights ``b``. torchdiffeq's
    fixed-step methods interpolate so by default (its ``interp="linear"``); exact at the step's ends, first
    order in between.
    """
    return dataclasses.replace(tableau, interpolation=tuple((b_j,) for b_j in tableau.b))
