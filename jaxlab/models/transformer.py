"""A ViT-style encoder classifier: patches, learned position embeddings, pre-LayerNorm blocks.

Shapes in names: B batch, T tokens, N width, H heads, D head width, C classes.
The attention projections carry no biases, as in the transformer-minimization paper's parameter
counts; every other layer has them.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


class SelfAttention(nn.Module):
    """Multi-head softmax attention with query, key, value and output matrices W^Q, W^K, W^V, W^O."""
    heads: int

    @nn.compact
    def __call__(self, x_BTN: jax.Array) -> jax.Array:
        width = x_BTN.shape[-1]
        if width % self.heads:
            raise ValueError(f"width {width} is not divisible by heads {self.heads}")
        head_width = width // self.heads
        project = lambda name: nn.DenseGeneral((self.heads, head_width), use_bias=False, name=name)
        q_BTHD, k_BTHD, v_BTHD = (project(n)(x_BTN) for n in ("query", "key", "value"))
        scores_BHTT = jnp.einsum("bqhd,bkhd->bhqk", q_BTHD, k_BTHD) / jnp.sqrt(head_width)
        weights_BHTT = jax.nn.softmax(scores_BHTT, axis=-1)
        out_BTHD = jnp.einsum("bhqk,bkhd->bqhd", weights_BHTT, v_BTHD)
        return nn.DenseGeneral(width, axis=(-2, -1), use_bias=False, name="out")(out_BTHD)


class EncoderBlock(nn.Module):
    """x + attention(LN(x)), then (optionally) x + MLP(LN(x))."""
    heads: int
    mlp_dim: int
    use_mlp: bool

    @nn.compact
    def __call__(self, x_BTN: jax.Array) -> jax.Array:
        x_BTN = x_BTN + SelfAttention(self.heads, name="attention")(nn.LayerNorm(name="norm1")(x_BTN))
        if self.use_mlp:
            h_BTM = nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(nn.LayerNorm(name="norm2")(x_BTN)))
            x_BTN = x_BTN + nn.Dense(x_BTN.shape[-1], name="mlp_out")(h_BTM)
        return x_BTN


class VisionTransformer(nn.Module):
    """Images (B, height, width, channels) -> class logits (B, C); mean pooling over tokens."""
    num_classes: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_dim: int
    use_mlp: bool = True

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        patches_BTP = patchify(images, self.patch_size)
        x_BTN = nn.Dense(self.width, name="embed")(patches_BTP)
        position_TN = self.param("position", nn.initializers.normal(0.02), x_BTN.shape[1:])
        x_BTN = x_BTN + position_TN
        for i in range(self.depth):
            x_BTN = EncoderBlock(self.heads, self.mlp_dim, self.use_mlp, name=f"block{i}")(x_BTN)
        pooled_BN = nn.LayerNorm(name="norm")(x_BTN).mean(axis=1)
        return nn.Dense(self.num_classes, name="head")(pooled_BN)


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """(B, height, width, channels) -> (B, tokens, patch_size² · channels), row-major patches."""
    b, h, w, c = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {patch_size}")
    p = patch_size
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)
