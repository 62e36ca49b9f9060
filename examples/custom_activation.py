"""Extending a family with a new activation, from Python.

    python examples/custom_activation.py

A registered name works everywhere a built-in one does (configs, TOML sweeps, the CLI in
the same process); in a TOML file you can also name any importable function as
"package.module:function" without registering it."""
import jax.numpy as jnp

import twolayer


def softsign(z):
    return z / (1.0 + jnp.abs(z))


twolayer.register_activation("softsign", softsign)

if __name__ == "__main__":
    ds = twolayer.run(width=2, activation="softsign", init_scale=1e-6, imbalance=0.5,
                      learning_rate=0.05, max_steps=20_000)
    print("final training loss:", float(ds.train_loss[-1]),
          "test error:", float(ds.test_error[-1]), "stopped at step", int(ds.stop_step))
