"""Unit tests of accsgd_torch (run by @accsgd/conformance's src/pytorch.test.ts, or with
``python3 -m unittest discover -s packages/core/python``)."""

import os
import tempfile
import unittest
import warnings

import torch

from accsgd_torch import (
    AccSGD,
    StateError,
    load_state,
    load_weights,
    parameter_names,
    read_onnx_initializers,
    read_state,
    read_weights,
    save_state,
    save_weights,
)


def float32_bound(steps):
    """SPEC.md section 3's float32 bound after ``steps`` steps: 2^-24 * (32 + 4 t)."""
    return 2.0**-24 * (32 + 4 * steps)


def relative_error(got, truth):
    """SPEC.md section 3's metric (its floor, about 1e-29 here, never binds on these values)."""
    return ((got.double() - truth.double()).abs().max() / truth.double().abs().max().clamp_min(1e-29)).item()


def one_step(p, g, lr=0.1, kappa=1000.0, xi=10.0, small_const=0.7, weight_decay=0.0, buf=None):
    """SPEC.md section 2 for one tensor, in float64 Python scalars."""
    large_lr = lr * kappa / small_const
    alpha = 1 - small_const * small_const * xi / kappa
    beta = 1 - alpha
    zeta = small_const / (small_const + beta)
    g = [gi + weight_decay * pi for gi, pi in zip(g, p)]
    buf = list(p) if buf is None else buf
    buf = [beta * ((1 / beta - 1) * b - large_lr * gi + pi) for b, gi, pi in zip(buf, g, p)]
    p = [zeta * (pi - lr * gi) + (1 - zeta) * b for pi, gi, b in zip(p, g, buf)]
    return p, buf


class ReferenceOptimizer(unittest.TestCase):
    def test_two_steps_follow_the_spec(self):
        p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        optimizer = AccSGD([p], lr=0.05, kappa=300.0, xi=8.0, weight_decay=1e-3)
        expected, buf = p.tolist(), None
        for g in ([0.5, 0.25, -1.0], [-0.125, 1.0, 2.0]):
            p.grad = torch.tensor(g, dtype=torch.float64)
            optimizer.step()
            expected, buf = one_step(expected, g, lr=0.05, kappa=300.0, xi=8.0, weight_decay=1e-3, buf=buf)
        for got, want in zip(p.tolist(), expected):
            self.assertAlmostEqual(got, want, delta=1e-15 * max(1.0, abs(want)))
        self.assertEqual(optimizer.param_groups[0]["step"], 2)

    def test_weight_decay_goes_into_the_gradient_in_place_as_in_the_reference(self):
        p = torch.tensor([2.0, 4.0], dtype=torch.float64)
        p.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
        AccSGD([p], lr=0.1, weight_decay=0.5).step()
        self.assertEqual(p.grad.tolist(), [2.0, 3.0])

    def test_a_tensor_without_a_gradient_is_skipped_and_counts_no_step(self):
        a = torch.ones(2, dtype=torch.float64)
        b = torch.ones(2, dtype=torch.float64)
        optimizer = AccSGD([{"params": [a]}, {"params": [b]}], lr=0.1)
        a.grad = torch.ones(2, dtype=torch.float64)
        optimizer.step()
        self.assertEqual(b.tolist(), [1.0, 1.0])
        self.assertNotIn("momentum_buffer", optimizer.state[b])
        self.assertEqual([g["step"] for g in optimizer.param_groups], [1, 0])

    def test_a_group_added_later_counts_its_steps(self):
        a = torch.ones(2, dtype=torch.float64)
        b = torch.ones(3, dtype=torch.float64)
        optimizer = AccSGD([a], lr=0.1)
        optimizer.add_param_group({"params": [b], "lr": 0.01})
        a.grad, b.grad = torch.ones(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
        optimizer.step()
        self.assertEqual([g["step"] for g in optimizer.param_groups], [1, 1])


class MultiTensorPath(unittest.TestCase):
    """foreach=True: the fused form of SPEC.md section 2.1 with torch._foreach_* operations."""

    STEPS = 40

    def run_path(self, dtype, foreach):
        generator = torch.Generator().manual_seed(7)
        shapes = [(5, 4), (7,), (3, 2, 2), (6,)]
        params = [torch.rand(s, generator=generator, dtype=torch.float64).to(dtype) * 2 - 1 for s in shapes]
        # Group 0 mixes float32 and float64 when dtype is float32, so the path splits by dtype.
        group0 = [params[0], params[1].double() if dtype == torch.float32 else params[1]]
        group1 = params[2:]
        optimizer = AccSGD(
            [{"params": group0, "weight_decay": 1e-3}, {"params": group1, "lr": 0.02, "kappa": 300.0, "small_const": 0.5}],
            lr=0.05,
            kappa=100.0,
            xi=4.0,
            foreach=foreach,
        )
        tensors = group0 + group1
        initial = [p.clone() for p in tensors]
        for step in range(self.STEPS):
            for k, p in enumerate(tensors):
                g = torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1
                # tensors[3] has no gradient at step 3, and none before step 2 (lazy buffer).
                p.grad = None if k == 3 and step in (0, 1, 3) else g.to(p.dtype)
            optimizer.step()
        buffers = [optimizer.state[p].get("momentum_buffer") for p in tensors]
        return optimizer, tensors, buffers, initial

    def test_foreach_agrees_with_the_reference_within_the_float32_contract(self):
        _, truth, truth_buffers, initial = self.run_path(torch.float64, foreach=False)
        _, truth_foreach, _, _ = self.run_path(torch.float64, foreach=True)
        worst = {}
        for foreach in (False, True):
            optimizer, tensors, buffers, _ = self.run_path(torch.float32, foreach=foreach)
            worst[foreach] = max(
                relative_error(t, u) for t, u in zip(tensors + buffers, truth + truth_buffers)
            )
            self.assertEqual([g["step"] for g in optimizer.param_groups], [self.STEPS, self.STEPS])
        self.assertLessEqual(worst[True], float32_bound(self.STEPS))
        self.assertLessEqual(worst[False], float32_bound(self.STEPS))
        # In float64 the two forms are the same algebra: agreement to rounding.
        for a, b in zip(truth_foreach, truth):
            self.assertLessEqual(relative_error(a, b), 1e-13)
        # And the trajectory moved far beyond the bound from where it started.
        self.assertGreater(min(relative_error(t, u) for t, u in zip(initial, truth)), 1e-2)

    def test_cache_blocks_change_no_value(self):
        import accsgd_torch

        def run(block):
            saved, accsgd_torch.CPU_BLOCK = accsgd_torch.CPU_BLOCK, block
            try:
                generator = torch.Generator().manual_seed(11)
                big = torch.rand(1000, generator=generator)
                # A transposed view is not contiguous: it stays whole.
                twisted = torch.rand(6, 5, generator=generator).t()
                small = torch.rand(3, generator=generator)
                optimizer = AccSGD([big, twisted, small], lr=0.05, kappa=100.0, weight_decay=1e-3, foreach=True)
                for _ in range(3):
                    for p in (big, twisted, small):
                        p.grad = torch.rand(p.shape, generator=generator)
                    optimizer.step()
                return [big, twisted, small] + [optimizer.state[p]["momentum_buffer"] for p in (big, twisted, small)]
            finally:
                accsgd_torch.CPU_BLOCK = saved

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # blocks are used with one thread only
        self.addCleanup(torch.set_num_threads, threads)
        unblocked = run(1 << 30)
        for block in (7, 64, 1 << 17):
            for got, want in zip(run(block), unblocked):
                self.assertTrue(torch.equal(got, want), f"block {block}")

    def test_foreach_leaves_the_gradient_alone_and_skips_what_has_none(self):
        a = torch.tensor([2.0, 4.0], dtype=torch.float64)
        b = torch.tensor([1.0], dtype=torch.float64)
        a.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
        optimizer = AccSGD([a, b], lr=0.1, weight_decay=0.5, foreach=True)
        optimizer.step()
        self.assertEqual(a.grad.tolist(), [1.0, 1.0])
        self.assertEqual(b.tolist(), [1.0])
        self.assertNotIn("momentum_buffer", optimizer.state[b])
        # The same step as the reference, whose gradient does carry the decay afterwards.
        a2 = torch.tensor([2.0, 4.0], dtype=torch.float64)
        a2.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
        AccSGD([a2], lr=0.1, weight_decay=0.5).step()
        self.assertLessEqual(relative_error(a, a2), 1e-15)


class Weights(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        torch.manual_seed(3)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))

    def tearDown(self):
        self.dir.cleanup()

    def test_weights_round_trip_by_state_dict_name(self):
        path = os.path.join(self.dir.name, "w.safetensors")
        self.model(torch.rand(5, 4))  # running statistics that differ from a fresh module's
        save_weights(self.model, path)
        tensors = read_weights(path)
        # Float state_dict entries only: BatchNorm's int64 num_batches_tracked stays behind.
        self.assertEqual(
            sorted(tensors),
            sorted(k for k in self.model.state_dict() if not k.endswith("num_batches_tracked")),
        )
        other = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
        load_weights(other, tensors)
        for name, value in self.model.state_dict().items():
            if value.is_floating_point():
                self.assertTrue(torch.equal(other.state_dict()[name], value), name)

    def test_a_file_that_does_not_fit_changes_nothing(self):
        tensors = {name: torch.zeros_like(p) for name, p in self.model.named_parameters()}
        tensors["2.weight"] = torch.zeros(3, 2)
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        with self.assertRaisesRegex(StateError, r'"2.weight" has shape \[3, 2\]; the module has \[2, 3\]'):
            load_weights(self.model, tensors)
        del tensors["2.weight"]
        with self.assertRaisesRegex(StateError, r"no weights for the parameters \['2.weight'\]"):
            load_weights(self.model, tensors)
        for name, value in self.model.state_dict().items():
            self.assertTrue(torch.equal(value, before[name]), name)

    def test_onnx_initializers_carry_the_state_dict_names(self):
        path = os.path.join(self.dir.name, "m.onnx")
        self.model.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on BatchNorm
            torch.onnx.export(
                self.model,
                torch.rand(2, 4),
                path,
                training=torch.onnx.TrainingMode.TRAINING,
                do_constant_folding=False,
                opset_version=17,
            )
        initializers = read_onnx_initializers(path)
        for name, p in self.model.named_parameters():
            self.assertTrue(torch.equal(initializers[name], p.detach()), name)
        other = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
        load_weights(other, initializers)
        self.assertTrue(torch.equal(other[2].weight, self.model[2].weight))

    def test_parameter_names_are_the_modules_state_dict_names_in_group_order(self):
        optimizer = AccSGD([{"params": [self.model[2].weight]}, {"params": [self.model[0].bias]}], lr=0.1)
        self.assertEqual(parameter_names(self.model, optimizer), ["2.weight", "0.bias"])
        with self.assertRaisesRegex(ValueError, "not a parameter of the module"):
            parameter_names(self.model, AccSGD([torch.zeros(2, requires_grad=True)], lr=0.1))


class ShardedState(unittest.TestCase):
    """ZeroRedundancyOptimizer over AccSGD in a one-rank gloo group (the 2-rank run is in
    @accsgd/cross-adapter's device-to-cluster test)."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "state.safetensors")
        torch.distributed.init_process_group(
            "gloo", init_method="file://" + os.path.join(self.dir.name, "store"), rank=0, world_size=1
        )

    def tearDown(self):
        torch.distributed.destroy_process_group()
        self.dir.cleanup()

    def model(self):
        torch.manual_seed(5)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))

    def test_a_sharded_optimizer_saves_and_loads_the_same_file_as_a_plain_one(self):
        from torch.distributed.optim import ZeroRedundancyOptimizer

        plain_model, zero_model = self.model(), self.model()
        plain = AccSGD(plain_model.parameters(), lr=0.05, kappa=100.0, foreach=True)
        zero = ZeroRedundancyOptimizer(zero_model.parameters(), optimizer_class=AccSGD, lr=0.05, kappa=100.0, foreach=True)
        x = torch.rand(5, 3)
        for model, optimizer in ((plain_model, plain), (zero_model, zero)):
            for _ in range(3):
                optimizer.zero_grad()
                model(x).square().mean().backward()
                optimizer.step()
        plain_path = os.path.join(self.dir.name, "plain.safetensors")
        save_state(plain, plain_path, parameter_names(plain_model, plain))
        self.assertTrue(save_state(zero, self.path, parameter_names(zero_model, zero)))
        (plain_groups, plain_buffers), (zero_groups, zero_buffers) = read_state(plain_path), read_state(self.path)
        self.assertEqual(zero_groups, plain_groups)
        self.assertEqual(zero_groups[0]["step"], 3)
        for name, buffer in plain_buffers.items():
            self.assertTrue(torch.equal(zero_buffers[name], buffer), name)

        # One file into a fresh sharded optimizer: its buffers, hyperparameters and step counts.
        fresh_model = self.model()
        fresh = ZeroRedundancyOptimizer(fresh_model.parameters(), optimizer_class=AccSGD, lr=0.5, foreach=True)
        load_state(fresh, plain_path, parameter_names(fresh_model, fresh))
        self.assertEqual([g["step"] for g in fresh.optim.param_groups], [3])
        self.assertEqual(fresh.optim.param_groups[0]["lr"], 0.05)
        self.assertTrue(fresh.optim.param_groups[0]["foreach"])
        for name, p in fresh_model.named_parameters():
            self.assertTrue(torch.equal(fresh.optim.state[p]["momentum_buffer"], plain_buffers[name]), name)


class StateFile(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "state.safetensors")

    def tearDown(self):
        self.dir.cleanup()

    def stepped(self, kappa=1000.0):
        a = torch.tensor([1.0, 2.0], dtype=torch.float64)
        b = torch.tensor([3.0], dtype=torch.float32)
        optimizer = AccSGD([a, b], lr=0.1, kappa=kappa)
        a.grad, b.grad = torch.tensor([0.5, -0.5], dtype=torch.float64), torch.tensor([1.0])
        optimizer.step()
        return optimizer, a, b

    def test_round_trip_by_name_in_any_order_within_a_group(self):
        optimizer, a, b = self.stepped()
        save_state(optimizer, self.path, ["a", "b"])
        a2, b2 = torch.zeros(2, dtype=torch.float64), torch.zeros(1)
        other = AccSGD([b2, a2], lr=0.5)  # the same group, listed the other way round
        load_state(other, self.path, ["b", "a"])
        self.assertTrue(torch.equal(other.state[a2]["momentum_buffer"], optimizer.state[a]["momentum_buffer"]))
        self.assertTrue(torch.equal(other.state[b2]["momentum_buffer"], optimizer.state[b]["momentum_buffer"]))
        self.assertEqual(other.param_groups[0]["lr"], 0.1)
        self.assertIs(type(other.param_groups[0]["kappa"]), float)
        self.assertEqual(other.param_groups[0]["step"], 1)

    def test_a_file_that_does_not_fit_changes_nothing(self):
        optimizer, _, _ = self.stepped()
        save_state(optimizer, self.path, ["a", "b"])
        a2, b2 = torch.zeros(3, dtype=torch.float64), torch.zeros(1)  # "a" has another shape
        other = AccSGD([a2, b2], lr=0.5)
        with self.assertRaisesRegex(StateError, r'buffer "a.momentum_buffer" has shape \[2\]; the parameter has \[3\]'):
            load_state(other, self.path, ["a", "b"])
        self.assertEqual(other.param_groups[0]["lr"], 0.5)
        self.assertEqual(other.param_groups[0]["step"], 0)
        self.assertEqual(len(other.state), 0)

    def test_save_refuses_what_no_reader_would_accept(self):
        optimizer, _, _ = self.stepped(kappa=1.0)  # beta = 0.7^2 * 10 / 1 = 4.9 > 1
        with self.assertRaisesRegex(ValueError, "no reader would accept this state: .*beta"):
            save_state(optimizer, self.path)
        self.assertFalse(os.path.exists(self.path))
        half = torch.ones(2, dtype=torch.float16)
        half.grad = torch.ones(2, dtype=torch.float16)
        optimizer = AccSGD([half], lr=0.1)
        optimizer.step()
        with self.assertRaisesRegex(ValueError, "float32 or float64"):
            save_state(optimizer, self.path)


if __name__ == "__main__":
    unittest.main()
