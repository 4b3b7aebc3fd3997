"""The portal and operator toolkit: the `twoway` command and a synthetic programme generator."""
