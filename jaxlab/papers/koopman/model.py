"""Koopman autoencoders: encoder x -> z, a linear Koopman operator on z, decoder z -> x.

Shapes in names: N states (any leading axes flattened), D state dimension, L latent dimension,
G grid points, C channels. The Koopman step is a row-vector product ``z @ A`` with ``A = K^T``.

The encoder and decoder come in two families: an MLP for low-dimensional states (Lorenz-63, the
pendulum) and a small periodic 1-D conv net for fields on a grid (Burgers on 64 points).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Dense -> GELU blocks, then a linear output layer of width ``out_dim``."""

    hidden: int
    depth: int
    out_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_ND: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x_ND = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, name=f"hidden{i}")(x_ND))
        return nn.Dense(self.out_dim, dtype=self.dtype, name="out")(x_ND)


class ConvEncoder(nn.Module):
    """A field (N, G) -> latents (N, L): two stride-2 circular convolutions, then a linear map."""

    channels: int
    latent_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, u_NG: jax.Array) -> jax.Array:
        h = u_NG[..., None]
        for i, c in enumerate((self.channels, 2 * self.channels)):
            conv = nn.Conv(
                c, (5,), strides=(2,), padding="CIRCULAR", dtype=self.dtype, name=f"conv{i}"
            )
            h = nn.gelu(conv(h))
        return nn.Dense(self.latent_dim, dtype=self.dtype, name="out")(h.reshape(h.shape[0], -1))


class ConvDecoder(nn.Module):
    """Latents (N, L) -> a field (N, G): a linear map to G/4 cells, then twice (repeat each cell,
    circular convolution); upsampling by repetition avoids transposed-conv checkerboards and
    costs half as much on CPU."""

    channels: int
    grid: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z_NL: jax.Array) -> jax.Array:
        cells, width = self.grid // 4, 2 * self.channels
        h = nn.Dense(cells * width, dtype=self.dtype, name="in")(z_NL).reshape(-1, cells, width)
        conv0 = nn.Conv(self.channels, (5,), padding="CIRCULAR", dtype=self.dtype, name="conv0")
        h = nn.gelu(conv0(jnp.repeat(h, 2, axis=1)))
        conv1 = nn.Conv(1, (5,), padding="CIRCULAR", dtype=self.dtype, name="conv1")
        h = conv1(jnp.repeat(h, 2, axis=1))
        return h[..., 0]


class KoopmanAutoencoder(nn.Module):
    """encode(x) -> z, decode(z) -> x, and (when ``learned_koopman``) a trained matrix A = K^T.

    ``A`` starts at the identity (every mode persists, neither growing nor decaying), the usual
    start for a learned Koopman matrix; with ``learned_koopman=False`` it is not a parameter and
    the task supplies a closed-form one.
    """

    state_dim: int
    latent_dim: int
    encoder: str = "mlp"  # "mlp" or "conv"
    hidden: int = 64
    depth: int = 2
    channels: int = 16
    learned_koopman: bool = True
    # The encoder and decoder compute in ``dtype`` (config.train.compute_dtype); latents, the
    # Koopman matrix and reconstructions are float32, so the linear dynamics stay float32.
    dtype: Any = jnp.float32

    def setup(self):
        if self.encoder == "mlp":
            self.encoder_net = MLP(self.hidden, self.depth, self.latent_dim, self.dtype)
            self.decoder_net = MLP(self.hidden, self.depth, self.state_dim, self.dtype)
        elif self.encoder == "conv":
            if self.state_dim % 4:
                raise ValueError(
                    f"the conv encoder needs a grid divisible by 4, got {self.state_dim}"
                )
            self.encoder_net = ConvEncoder(self.channels, self.latent_dim, self.dtype)
            self.decoder_net = ConvDecoder(self.channels, self.state_dim, self.dtype)
        else:
            raise ValueError(f"unknown encoder {self.encoder!r}: expected 'mlp' or 'conv'")
        if self.learned_koopman:
            self.koopman_transpose = self.param(
                "koopman_transpose",
                lambda _, shape: jnp.eye(shape[0]),
                (self.latent_dim, self.latent_dim),
            )

    def encode(self, x_ND: jax.Array) -> jax.Array:
        return self.encoder_net(x_ND).astype(jnp.float32)

    def decode(self, z_NL: jax.Array) -> jax.Array:
        return self.decoder_net(z_NL).astype(jnp.float32)

    def koopman(self) -> jax.Array:
        """The learned A = K^T (L, L); only with ``learned_koopman``."""
        return self.koopman_transpose

    def __call__(self, x_ND: jax.Array) -> jax.Array:
        """Reconstruction dec(enc(x)); ``init`` through it creates every parameter (A in setup)."""
        return self.decode(self.encode(x_ND))
