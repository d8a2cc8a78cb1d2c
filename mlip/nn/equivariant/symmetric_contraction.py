"""Higher body order on each atom: the symmetric contraction of MACE, for any correlation order.

From the atomic basis A_i [C, D] (a sum over neighbours, hence two-body), output irrep L of
channel c is

    B_i[c, L, M] = sum_{nu=1..correlation} sum_k w_nu[Z_i, k, c] sum_{d1..d_nu} U_nu[M, d1..d_nu, k]
                   A_i[c, d1] ... A_i[c, d_nu]

with U_nu the generalised Clebsch-Gordan tensors (``mlip.nn.equivariant.coupling.symmetric_coupling``,
built recursively) and one weight per coupling path, species and channel: body order
correlation + 1. As in MACE, the weights are contracted with U first and the result with A one
index at a time (Horner's scheme; correlation 3, every preset, takes a faster route, see
``_OutputIrrep._third_order``):

    T_nu = U_nu w_nu,    T_k = T_{k+1} . A + U_k w_k  (k = nu-1 .. 1),    B = T_1 . A

which costs C (2L+1) D^nu per atom for the highest order: ``dense_size`` is what limits nu.
"""

import itertools
from typing import List, Optional

import numpy as np
import torch

from mlip.nn.equivariant.coupling import symmetric_coupling
from mlip.nn.equivariant.irreps import Irrep, irreps_dim


def dense_size(ls: List[Irrep], correlation: int) -> int:
    """D^correlation: entries per channel, atom and output component of the largest intermediate
    of the contraction (and rows per output component of the largest coupling tensor)."""
    return irreps_dim(ls) ** correlation


class _Order(torch.nn.Module):
    """One correlation order nu of one output irrep: the coupling tensor ``u`` [(2L+1) D^nu, K]
    (constant, not in the state dict) and the weights ``w`` [num_species, K, C].

    Order 3 also keeps ``u_pairs`` [(2L+1) D P, K], the coupling on the unordered pairs of its last
    two indices (P = D(D+1)/2, ``_OutputIrrep._third_order``): U[M, d1, (d2, d3)] plus its transpose
    in (d2, d3) off the diagonal. It is linear in U, so it is formed once here, not from U w on
    every call (two index_selects along the last axis and their backward)."""
    u: torch.Tensor
    u_pairs: torch.Tensor

    def __init__(self, ls: List[Irrep], out: Irrep, nu: int, num_species: int, channels: int):
        super().__init__()
        u = symmetric_coupling(ls, out, nu)
        u = u.reshape(int(np.prod(u.shape[:-1])), u.shape[-1])
        k = u.shape[1]
        self.nu = nu
        self.d = irreps_dim(ls)
        # constants of the irreps, rebuilt with the model: not saved in state dicts (at correlation 4
        # u can hold millions of numbers)
        self.register_buffer("u", u.to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("u_pairs", _pairs(u, self.d, nu).to(torch.get_default_dtype()), persistent=False)
        if nu == 1:  # the linear term starts as the identity on each matching irrep
            self.w = torch.nn.Parameter(torch.ones(num_species, k, channels))
        else:
            self.w = torch.nn.Parameter(torch.randn(num_species, k, channels) / max(k, 1))

    @torch.jit.unused
    def symmetrise(self) -> None:
        """Replace ``u`` by its mean over the permutations of its nu copies (and ``u_pairs`` by
        that of the result): the same contraction, since the product of nu copies of one feature
        is symmetric, but now the derivative in one copy is nu times the contraction with nu - 1
        copies (``_OutputIrrep.inference``)."""
        m = self.u.shape[0] // self.d ** self.nu
        k = self.u.shape[1]
        u = self.u.double().view((m,) + (self.d,) * self.nu + (k,))
        perms = list(itertools.permutations(range(1, self.nu + 1)))
        u = torch.stack([u.permute((0,) + p + (self.nu + 1,)) for p in perms]).mean(0).reshape(-1, k)
        self.u = u.to(self.u.dtype)
        self.u_pairs = _pairs(u, self.d, self.nu).to(self.u.dtype)

    def forward(self, s: int, pairs: bool = False) -> torch.Tensor:
        """(U w)^T for species index ``s``: [C, (2L+1) D^nu], contiguous, so that each channel's
        slice is a contiguous matrix: CPU ``bmm`` then runs one batched product instead of a loop
        over channels with a copy of each operand. ``pairs`` (order 3 only): (U_pairs w)^T,
        [C, (2L+1) D P]."""
        return self.w[s].t() @ (self.u_pairs if pairs else self.u).t()


def _pairs(u: torch.Tensor, d: int, nu: int) -> torch.Tensor:
    """Order 3: the coupling [(2L+1) D P, K] on the unordered pairs d2 <= d3 of its last two copies
    (``_Order``); empty for other orders."""
    k = u.shape[1]
    if nu != 3:
        return u.new_zeros(0, k)
    iu = torch.triu_indices(d, d)
    full = u.view(-1, d * d, k)
    off_diagonal = (iu[0] != iu[1]).to(u.dtype).view(1, -1, 1)
    return (full[:, iu[0] * d + iu[1]] + full[:, iu[1] * d + iu[0]] * off_diagonal).reshape(-1, k)


def _pair_products(x: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """x_d2 x_d3 for the unordered pairs (``first``, ``second``) = ``torch.triu_indices(D, D)``:
    [C, D, n] -> [C, D(D+1)/2, n], differentiable."""
    return x.index_select(1, first) * x.index_select(1, second)


def _cubic(x: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, t3: torch.Tensor,
           quadratic: torch.Tensor) -> torch.Tensor:
    """B[C, M, n] = sum_d1 x_d1 (T1 + T2 x + T3' (x x))[M, d1] from ``x`` [C, D, n], ``t1`` [C, M D],
    ``t2`` [C, M D, D], ``t3`` [C, M D, P] and the pair products ``quadratic`` [C, P, n]."""
    c, d, n = x.shape
    m = t1.shape[1] // d
    y = torch.baddbmm(t1.unsqueeze(2), t2, x)
    y = torch.baddbmm(y, t3, quadratic)  # [C, M D, n]
    return (y.view(c, m, d, n) * x.unsqueeze(1)).sum(2)


def _pair_products_untracked(x: torch.Tensor) -> torch.Tensor:
    """x_d2 x_d3 for d2 <= d3 (``torch.triu_indices`` order): [C, D, n] -> [C, D(D+1)/2, n], written
    slab by slab into one tensor (D products of contiguous rows): 2.7x faster on CPU than two
    ``index_select`` copies and their product, but ``out=`` records no autograd graph, so only for
    values nothing differentiates."""
    c, d, n = x.shape
    out = torch.empty((c, d * (d + 1) // 2, n), dtype=x.dtype, device=x.device)
    start = 0
    for a in range(d):
        torch.mul(x[:, a:a + 1], x[:, a:], out=out[:, start:start + d - a])
        start += d - a
    return out


class _CubicContraction(torch.autograd.Function):
    """Correlation 3 for training: B[C, M, n] = sum_d1 x_d1 (T1 + T2 x + T3' (x x))[M, d1] with
    couplings symmetric in their copies (``_Order.symmetrise``), whose derivative in x is, by Euler's
    theorem, G = T1 + 2 T2 x + 3 T3' (x x) (``_OutputIrrep._third_order_inference``).

    The forward pass records nothing. The backward pass recomputes G from the saved inputs with
    differentiable operations and returns sum_M dB_M G_M (and the couplings' gradients), so a force
    loss differentiates through G once (double backward by autograd), instead of through autograd's
    own backward of the quadratic products and both batched products: about half the passes over the
    [C, D(D+1)/2, n] pair products per training step. The same values and derivatives of every
    order as ``_OutputIrrep._third_order`` (tests)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, t3: torch.Tensor,
                pair_first: torch.Tensor, pair_second: torch.Tensor) -> torch.Tensor:
        """``x`` [C, D, n], ``t1`` [C, M D], ``t2`` [C, M D, D], ``t3`` [C, M D, P] -> [C, M, n]."""
        quadratic = _pair_products_untracked(x)  # [C, P, n]
        ctx.save_for_backward(x, t1, t2, t3, pair_first, pair_second, quadratic)
        return _cubic(x, t1, t2, t3, quadratic)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, t1, t2, t3, pair_first, pair_second, quadratic = ctx.saved_tensors
        c, d, n = x.shape
        m = t1.shape[1] // d
        if torch.is_grad_enabled():  # create_graph (a force loss): G as a function of x and the couplings
            quadratic = _pair_products(x, pair_first, pair_second)  # [C, P, n]
        # the factors 2 and 3 on the couplings (small), not on the [C, P, n] products' gradients
        g = torch.baddbmm(t1.unsqueeze(2), 2.0 * t2, x)
        g = torch.baddbmm(g, 3.0 * t3, quadratic).view(c, m, d, n)  # dB[M]/dx = G [C, M, D, n]
        grad_x = (grad.unsqueeze(2) * g).sum(1) if ctx.needs_input_grad[0] else None
        grad_t1 = grad_t2 = grad_t3 = None
        if any(ctx.needs_input_grad[1:4]):
            outer = (grad.unsqueeze(2) * x.unsqueeze(1)).reshape(c, m * d, n)  # dB_M x_d1: [C, M D, n]
            if ctx.needs_input_grad[1]:
                grad_t1 = outer.sum(2)
            if ctx.needs_input_grad[2]:
                grad_t2 = torch.bmm(outer, x.transpose(1, 2))
            if ctx.needs_input_grad[3]:
                grad_t3 = torch.bmm(outer, quadratic.transpose(1, 2))
        return grad_x, grad_t1, grad_t2, grad_t3, None, None


class _OutputIrrep(torch.nn.Module):
    """The contraction for one output irrep (2L+1 components); ``orders[nu - 1]`` holds order nu."""
    pair_first: torch.Tensor
    pair_second: torch.Tensor

    def __init__(self, ls: List[Irrep], out: Irrep, correlation: int, num_species: int, channels: int):
        super().__init__()
        self.d = irreps_dim(ls)
        self.m = 2 * out[0] + 1
        self.channels = channels
        #: M D^k for k = 0..correlation (explicit sizes: views of an empty species must not infer them)
        self.sizes: List[int] = [self.m * self.d ** k for k in range(correlation + 1)]
        self.orders = torch.nn.ModuleList([_Order(ls, out, nu, num_species, channels)
                                           for nu in range(1, correlation + 1)])
        #: correlation 3 by ``_third_order`` (False: Horner's scheme, the reference in the tests)
        self.pair_route = correlation == 3
        #: correlation 3 in eager training through ``_CubicContraction``; False: autograd through
        #: ``_third_order``'s products
        self.euler = self.pair_route
        if self.pair_route:  # both Euler routes (training's and the exporters') need symmetric couplings:
            for order in self.orders:  # symmetrised once here (the same function)
                assert isinstance(order, _Order)
                order.symmetrise()
        #: inference only (``SymmetricContraction.prepare_inference``): the derivative in x from the
        #: forward's own products, no backward through them (first derivatives only)
        self.inference = False
        # correlation 3: the unordered pairs d2 <= d3 of the quadratic products x_d2 x_d3 (see
        # _third_order; the same order as ``_Order.u_pairs``); constants of the irreps, not saved
        iu = torch.triu_indices(self.d, self.d)
        self.register_buffer("pair_first", iu[0], persistent=False)
        self.register_buffer("pair_second", iu[1], persistent=False)

    def _third_order(self, x: torch.Tensor, cs: List[torch.Tensor], t3: torch.Tensor) -> torch.Tensor:
        """Correlation 3 (every preset) without Horner's [C, M D^2, n] intermediate:

            B[M] = sum_d1 x_d1 (T1[M, d1] + sum_d2 T2[M, d1, d2] x_d2
                                + sum_{d2 <= d3} T3'[M, d1, (d2, d3)] x_d2 x_d3)

        with T3' = T3 + its transpose in (d2, d3) off the diagonal (``t3`` [C, M D P], from
        ``_Order(s, pairs=True)``): the quadratic products of each atom ([C, D(D+1)/2, n]) meet the weights
        in one batched product. 1.7x faster than Horner's scheme for forward, force and parameter
        gradients of the small preset's contraction."""
        if self.inference:
            return self._third_order_inference(x, cs, t3)
        c, d, m = self.channels, self.d, self.m
        t1, t2, t3 = cs[0], cs[1].view(c, m * d, d), t3.view(c, m * d, -1)  # [C, M D], [C, M D, D], [C, M D, P]
        if self.euler and not torch.jit.is_scripting() and not self._compiling():
            return self._third_order_euler(x, t1, t2, t3)
        return _cubic(x, t1, t2, t3, _pair_products(x, self.pair_first, self.pair_second))  # [C, M, n]

    @torch.jit.unused
    def _compiling(self) -> bool:
        """Under ``torch.compile`` training takes the plain products, which Inductor fuses:
        ``_CubicContraction``'s slab-by-slab ``out=`` products cannot be traced."""
        return torch.compiler.is_compiling()

    @torch.jit.unused
    def _third_order_euler(self, x: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, t3: torch.Tensor
                           ) -> torch.Tensor:
        """``_third_order`` through ``_CubicContraction`` (eager training with symmetrised couplings)."""
        return _CubicContraction.apply(x, t1, t2, t3, self.pair_first, self.pair_second)

    def _third_order_inference(self, x: torch.Tensor, cs: List[torch.Tensor], t3: torch.Tensor) -> torch.Tensor:
        """``_third_order`` with couplings symmetric in their copies (``_Order.symmetrise``), for
        inference: with y1 = T2 x and y2 = T3' (x x), B = x . (T1 + y1 + y2) and, by Euler's theorem
        for homogeneous polynomials, dB/dx = T1 + 2 y1 + 3 y2. So B is written as x . G (G held
        constant) minus a constant, and the backward pass is one product with G instead of a pass
        back through the quadratic products and both batched products: the same values and first
        derivatives in x, no derivatives in the weights and no second derivatives."""
        c, d, m = self.channels, self.d, self.m
        n = x.shape[2]
        xd = x.detach()
        if torch.jit.is_scripting():  # (torch.export traces the index_select form, which Inductor fuses)
            quadratic = _pair_products_untracked(xd)  # [C, P, n]
        else:
            quadratic = _pair_products(xd, self.pair_first, self.pair_second)
        y1 = torch.bmm(cs[1].detach().view(c, m * d, d), xd)  # [C, M D, n]
        y2 = torch.bmm(t3.detach().view(c, m * d, quadratic.shape[1]), quadratic)
        grad = (cs[0].detach().unsqueeze(2) + 2.0 * y1 + 3.0 * y2).view(c, m, d, n)
        rest = ((y1 + 2.0 * y2).view(c, m, d, n) * xd.unsqueeze(1)).sum(2)
        return (grad * x.unsqueeze(1)).sum(2) - rest  # [C, M, n]

    def forward(self, x: torch.Tensor, s: int) -> torch.Tensor:
        """``x`` [C, D, n] (atoms of species index ``s``, atoms last) -> [C, M, n].

        Atoms are the last, contiguous axis of every intermediate: each multiply-and-sum then runs
        over long rows of atoms and sums whole slabs, which vectorises better than inner loops D = 16
        long (the [C, n, ..., D] layout): forward and backward of the small preset's contraction
        (1000 atoms, C = D = 16, correlation 3, one CPU thread) 31 ms against 43 (minimum of 15)."""
        c, d, m = self.channels, self.d, self.m
        n = x.shape[2]
        xb = x.unsqueeze(1)  # [C, 1, D, n]
        cs: List[torch.Tensor] = []
        if self.pair_route:
            t3 = x.new_zeros(0)
            for k, order in enumerate(self.orders):
                if k < 2:
                    cs.append(order(s))
                else:
                    t3 = order(s, True)
            return self._third_order(x, cs, t3)
        for order in self.orders:
            cs.append(order(s))  # order nu: [C, M * D^nu]
        nu = len(cs)
        if nu == 1:
            t = cs[0].unsqueeze(2).expand(c, m * d, n)
        else:
            # the highest order's last index as one batched product, then Horner steps
            top = cs[nu - 1].view(c, self.sizes[nu - 1], d)  # [C, M * D^(nu-1), D]
            t = torch.baddbmm(cs[nu - 2].unsqueeze(2), top, x)  # [C, M * D^(nu-1), n]
            for k in range(nu - 2, 0, -1):
                t = (t.view(c, self.sizes[k], d, n) * xb).sum(2)  # [C, M * D^k, n]
                t = t + cs[k - 1].unsqueeze(2)
        return (t.reshape(c, m, d, n) * xb).sum(2)  # [C, M, n]


def species_blocks(species: torch.Tensor, num_species: int) -> List[torch.Tensor]:
    """The atoms of each species index s < ``num_species`` in ``species`` [N], each followed by N,
    the index of a zero scratch atom that ``SymmetricContraction`` appends and drops at the end: no
    block is empty, which torch.export/AOTInductor needs to compile the per-species products (an
    unbacked block size of 0 or 1 makes Inductor's layout choice undecidable). ``num_species``
    tensors [n_s + 1], long."""
    scratch = torch.full((1,), species.shape[0], dtype=torch.long, device=species.device)
    return [torch.cat([torch.nonzero(species == s).squeeze(1), scratch]) for s in range(num_species)]


class SymmetricContraction(torch.nn.Module):
    """``a`` [N, C, D] (irreps ``ls_a`` per channel), ``species`` [N] (indices) -> B [N, C, D_out]
    (irreps ``ls_out``); weights per species, coupling path and channel; any ``correlation`` >= 1."""

    def __init__(self, ls_a: List[Irrep], ls_out: List[Irrep], correlation: int, num_species: int, channels: int):
        super().__init__()
        if correlation < 1:
            raise ValueError(f"correlation={correlation}: must be >= 1")
        self.correlation = correlation
        self.num_species = num_species
        self.blocks = torch.nn.ModuleList([_OutputIrrep(ls_a, out, correlation, num_species, channels)
                                           for out in ls_out])

    @torch.jit.unused
    def prepare_export(self) -> None:
        """Called by the AOTInductor exporter on its copy of the model: with several species the
        correlation-3 pair route's batched products run over per-species blocks of data-dependent
        size, which Inductor (torch 2.13) cannot lower; Horner's scheme (the same numbers) it can."""
        if self.num_species > 1:
            for block in self.blocks:
                assert isinstance(block, _OutputIrrep)
                block.pair_route = False

    @torch.jit.unused
    def prepare_inference(self) -> None:
        """Called by the exporters on their copy of the model: correlation 3 computes forces from the
        forward's own products (``_OutputIrrep._third_order_inference``; its couplings were
        symmetrised when the block was built). The result has first derivatives in the features only:
        no parameter gradients, no double backward (training keeps the default)."""
        for block in self.blocks:
            assert isinstance(block, _OutputIrrep)
            if block.pair_route:
                block.inference = True

    def _contract(self, x: torch.Tensor, s: int) -> torch.Tensor:
        """``x`` [C, D, n] -> [n, C, D_out]."""
        return torch.cat([block(x, s) for block in self.blocks], dim=1).permute(2, 0, 1)

    def forward(self, a: torch.Tensor, species: torch.Tensor,
                blocks: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """``blocks``: ``species_blocks(species, num_species)``, computed beforehand (a compiled
        training step takes them as inputs: their sizes depend on the data); None computes them."""
        x = a.permute(1, 2, 0).contiguous()  # [C, D, N]: atoms last (see _OutputIrrep.forward)
        if self.num_species == 1:
            return self._contract(x, 0)
        n = a.shape[0]
        x = torch.cat([x, x.new_zeros(x.shape[0], x.shape[1], 1)], dim=2)
        if blocks is None:
            blocks = species_blocks(species, self.num_species)
        out = torch.zeros(0)
        first = True
        for s, idx in enumerate(blocks):
            part = self._contract(x.index_select(2, idx), s)
            if first:
                out = torch.zeros((n + 1,) + part.shape[1:], dtype=a.dtype, device=a.device)
                first = False
            out = out.index_copy(0, idx, part)
        return out[:n]
