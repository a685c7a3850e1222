"""scaling: language-model scaling-law experiments with JAX, and a JAX-native law fitter.

Import what you need: `scaling.fit` (arrays in, laws out; never imports training code),
`scaling.model`, `scaling.flops`, `scaling.train`, `scaling.sweep`. This top-level module
imports nothing heavy so that `import scaling.fit` stays fast.
"""

__version__ = "0.1.0"
