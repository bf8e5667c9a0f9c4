"""What a memory is, measured: detecting input vectors that are no token's (`detect`), and more."""
