"""mlip.nn.equivariant on its own: the symmetric contraction at correlation 4 rotates (and
reflects) with Wigner D and is a polynomial of degree 4, the recursive coupling keeps the paths of
correlation 1-3, and both interaction algorithms give the same layer on scalar inputs."""

import pytest
import torch
from e3nn import o3
from scipy.spatial.transform import Rotation

from mlip.nn.equivariant.coupling import symmetric_coupling
from mlip.nn.equivariant.interaction import ScalarInputInteraction, TensorInputInteraction
from mlip.nn.equivariant.irreps import irreps_dim, irreps_up_to
from mlip.nn.equivariant.symmetric_contraction import SymmetricContraction
from mlip.nn.neighbor_slots import neighbour_slots


@pytest.fixture(autouse=True)
def float64():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def _randomize(module):
    """Standard-normal parameters (the initial ones leave some orders at zero or the identity)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))


def _wigner_d(ls, R):
    return o3.Irreps([(1, ir) for ir in ls]).D_from_matrix(torch.tensor(R))


@pytest.mark.parametrize("parity", [True, False])
def test_symmetric_contraction_at_correlation_4_is_equivariant(parity):
    torch.manual_seed(0)
    ls_a = irreps_up_to(2, parity)
    ls_out = irreps_up_to(1, parity)
    contraction = SymmetricContraction(ls_a, ls_out, correlation=4, num_species=2, channels=3)
    _randomize(contraction)
    a = torch.randn(5, 3, 9)
    species = torch.tensor([0, 1, 1, 0, 1])
    R = Rotation.random(random_state=3).as_matrix()
    if parity:
        R = -R  # improper: odd irreps change sign too
    b = contraction(a, species)
    b_rot = contraction(a @ _wigner_d(ls_a, R).T, species)
    torch.testing.assert_close(b_rot, b @ _wigner_d(ls_out, R).T, atol=1e-10, rtol=0)
    assert b[:, :, 1:].abs().max() > 1e-2  # the vector output is not trivially zero


def test_correlation_3_pair_route_equals_horner_with_its_gradients():
    """The correlation-3 route (quadratic products of unordered pairs, one batched product; in
    training through ``_CubicContraction``, whose backward is Euler's G on symmetrised couplings)
    gives Horner's scheme's B, dB/dA and the parameter gradients of a force-like loss (double
    backward, as in training), for scalar and vector outputs and several species, one with no
    atoms."""
    torch.manual_seed(2)
    ls_a = irreps_up_to(2, True)
    ls_out = irreps_up_to(1, True)
    contraction = SymmetricContraction(ls_a, ls_out, correlation=3, num_species=3, channels=4)
    _randomize(contraction)
    a = torch.randn(7, 4, 9, requires_grad=True)
    species = torch.tensor([0, 1, 1, 0, 1, 0, 0])  # species 2 absent

    def outputs(pair_route):
        for block in contraction.blocks:
            block.pair_route = pair_route
        b = contraction(a, species)
        grad_a = torch.autograd.grad((b ** 3).sum(), a, create_graph=True)[0]
        params = torch.autograd.grad((grad_a ** 2).sum(), list(contraction.parameters()))
        return [b, grad_a, *params]

    assert all(block.euler for block in contraction.blocks)
    fast, horner = outputs(True), outputs(False)
    for x, y in zip(fast, horner):
        torch.testing.assert_close(x, y, atol=1e-9, rtol=1e-9)
    assert fast[0][:, :, 1:].abs().max() > 1e-2


def test_inference_route_gives_the_same_outputs_and_first_derivatives():
    """``prepare_inference`` (what the exporters call): the correlation-3 contraction writes B as
    x . G - const with G = dB/dx from Euler's theorem on symmetrised couplings. B and dB/dA under
    any upstream gradient equal the training route's (scalar and vector outputs, several species,
    one without atoms), and the couplings' symmetrised tensors leave B unchanged."""
    import copy

    torch.manual_seed(3)
    ls_a = irreps_up_to(2, True)
    ls_out = irreps_up_to(1, True)
    contraction = SymmetricContraction(ls_a, ls_out, correlation=3, num_species=3, channels=4)
    _randomize(contraction)
    inference = copy.deepcopy(contraction)
    inference.prepare_inference()
    assert all(block.inference for block in inference.blocks)
    a = torch.randn(7, 4, 9, requires_grad=True)
    species = torch.tensor([0, 1, 1, 0, 1, 0, 0])  # species 2 absent
    upstream = torch.randn(7, 4, irreps_dim(ls_out))
    results = []
    for module in (contraction, inference):
        b = module(a, species)
        results.append((b, torch.autograd.grad((b * upstream).sum(), a)[0]))
    (b0, g0), (b1, g1) = results
    torch.testing.assert_close(b1, b0, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(g1, g0, atol=1e-12, rtol=1e-12)
    assert b0[:, :, 1:].abs().max() > 1e-2 and g0.abs().max() > 1e-2


def test_highest_order_is_a_nonzero_polynomial_of_degree_4():
    torch.manual_seed(1)
    ls = irreps_up_to(2, True)
    contraction = SymmetricContraction(ls, [(0, 1)], correlation=4, num_species=1, channels=2)
    with torch.no_grad():
        for nu, order in enumerate(contraction.blocks[0].orders, start=1):
            order.w.copy_(torch.randn_like(order.w) if nu == 4 else torch.zeros_like(order.w))
    a = torch.randn(4, 2, 9)
    species = torch.zeros(4, dtype=torch.long)
    b = contraction(a, species)
    assert b.abs().min() > 1e-6
    torch.testing.assert_close(contraction(2.0 * a, species), 16.0 * b, atol=1e-10, rtol=1e-12)


def test_coupling_paths_per_order():
    """Paths of the scalar output per correlation order nu = 1..4: 1..3 as before the recursion
    (the parameterisation of saved models), 4 from it."""
    counts = [symmetric_coupling(irreps_up_to(2, True), (0, 1), nu).shape[-1] for nu in (1, 2, 3, 4)]
    assert counts == [1, 3, 5, 12]
    assert [symmetric_coupling(irreps_up_to(3, False), (2, 1), nu).shape[-1] for nu in (1, 2, 3)] == [1, 7, 29]
    u = symmetric_coupling(irreps_up_to(1, True), (0, 1), 2)  # 0e 0e and 1o . 1o
    assert u.shape == (1, 4, 4, 2)
    torch.testing.assert_close(u[0, :, :, 1], torch.diag(torch.tensor([0.0, 1, 1, 1])) / 3 ** 0.5)


def test_both_interaction_algorithms_agree_on_scalar_inputs():
    """The neighbour-slot algorithm (scalars) and the Clebsch-Gordan one give the same layer."""
    ls_sh = irreps_up_to(2, True)
    ls_out = irreps_up_to(1, True)
    torch.manual_seed(0)
    scalar = ScalarInputInteraction(ls_sh, ls_out, channels=3, num_species=2, correlation=2, avg_num_neighbors=3.0)
    tensor = TensorInputInteraction([(0, 1)], ls_sh, ls_sh, ls_out, channels=3, num_species=2, correlation=2,
                                    avg_num_neighbors=3.0)
    tensor.load_state_dict(scalar.state_dict(), strict=False)
    assert scalar.weight_numel == tensor.weight_numel
    n, e = 6, 20
    edge_index = torch.stack([torch.randint(0, n, (e,)), torch.randint(0, n, (e,))])
    vec = torch.randn(e, 3)
    sh = o3.SphericalHarmonics(o3.Irreps([(1, ir) for ir in ls_sh]), normalize=True, normalization="component")(vec)
    slot, sh_padded = neighbour_slots(edge_index[0], n, sh)
    x, species, weights = torch.randn(n, 3, 1), torch.randint(0, 2, (n,)), torch.randn(e, scalar.weight_numel)
    # each layer reads the same (channel, path) radial weights in its own column order
    assert sorted(scalar.weight_order) == list(range(scalar.weight_numel)) and tensor.weight_order == []
    ours = scalar(x, species, sh, weights[:, scalar.weight_order], edge_index, slot, sh_padded)
    torch.testing.assert_close(ours, tensor(x, species, sh, weights, edge_index, slot, sh_padded), atol=1e-12, rtol=0)


@pytest.mark.parametrize("l_in", [1, 2])
def test_tensor_interaction_slots_equal_edge_by_edge(l_in):
    """The tensor layer's neighbour-slot sum equals the edge-by-edge Clebsch-Gordan reference, for
    features with l >= 1, edges in any order and only the first M atoms as centres (MD engines)."""
    ls_in, ls_sh = irreps_up_to(l_in, True), irreps_up_to(3, True)
    torch.manual_seed(1)
    layer = TensorInputInteraction(ls_in, ls_sh, ls_sh, irreps_up_to(1, True), channels=3, num_species=2,
                                   correlation=2, avg_num_neighbors=3.0).double()
    n, m, e = 7, 5, 30
    edge_index = torch.stack([torch.randint(0, m, (e,)), torch.randint(0, n, (e,))])
    sh = o3.SphericalHarmonics(o3.Irreps([(1, ir) for ir in ls_sh]), normalize=True,
                               normalization="component")(torch.randn(e, 3, dtype=torch.float64))
    slot, sh_padded = neighbour_slots(edge_index[0], m, sh)
    x = torch.randn(n, 3, irreps_dim(ls_in), dtype=torch.float64)
    weights = torch.randn(e, layer.weight_numel, dtype=torch.float64)
    slots = layer.atomic_basis(x, sh, weights, edge_index, slot, sh_padded)
    dense = layer.atomic_basis_dense(x, sh, weights, edge_index, m)
    assert slots.shape == (m, 3, irreps_dim(ls_sh))
    assert dense.abs().max() > 0.1
    torch.testing.assert_close(slots, dense, atol=1e-12, rtol=1e-12)


def test_contraction_function_supports_the_double_vjp_of_parameter_gradients():
    """The identifiability analysis takes Jacobian columns by differentiating parameter gradients
    (``create_graph``) with respect to the upstream vector u of a force-like residual: third-order
    use of the training route's ``_CubicContraction``. It must equal autograd through the pair
    products (``euler`` off) to rounding."""
    torch.manual_seed(4)
    ls_a = irreps_up_to(2, True)
    contraction = SymmetricContraction(ls_a, irreps_up_to(1, True), correlation=3, num_species=2, channels=3)
    _randomize(contraction)
    a = torch.randn(6, 3, 9, requires_grad=True)
    species = torch.tensor([0, 1, 1, 0, 1, 0])
    params = list(contraction.parameters())

    def columns(euler):
        for block in contraction.blocks:
            block.euler = euler
        b = contraction(a, species)
        residual = torch.cat([b.reshape(-1), torch.autograd.grad((b ** 2).sum(), a, create_graph=True)[0].reshape(-1)])
        u = torch.zeros_like(residual, requires_grad=True)
        grads = torch.autograd.grad(residual, params, grad_outputs=u, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        return torch.stack([torch.autograd.grad(flat[j], u, retain_graph=True)[0] for j in range(0, flat.numel(), 7)])

    fast, plain = columns(True), columns(False)
    torch.testing.assert_close(fast, plain, atol=1e-10, rtol=1e-10)
    assert plain.abs().max() > 1e-2
