"""Unit tests of accsgd_torch (run by @accsgd/conformance's src/pytorch.test.ts, or with
``python3 -m unittest discover -s packages/core/python``)."""

import os
import tempfile
import unittest

import torch

from accsgd_torch import AccSGD, StateError, load_state, save_state


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
