"""What an encode is asked to do: `EncodeConfig` and the registered recipes."""
