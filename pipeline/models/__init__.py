"""Model families (nn.Modules built from typed params; no IO)."""
