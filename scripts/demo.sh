#!/usr/bin/env bash
# Encode a sample text with the embedded default model, decode it, and show whether they match.
set -euo pipefail
text=${1:-"The quick brown fox jumps over the lazy dog."}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s' "$text" > "$work/original.txt"
memtok encode -f "$work/original.txt" -o "$work/sample.mem.safetensors"
memtok decode "$work/sample.mem.safetensors" -o "$work/decoded.txt"
memtok info "$work/sample.mem.safetensors"
printf '\noriginal: %s\ndecoded:  %s\n' "$(cat "$work/original.txt")" "$(cat "$work/decoded.txt")"
if cmp -s "$work/original.txt" "$work/decoded.txt"; then
  echo "match: yes (byte for byte)"
else
  echo "match: NO"; exit 1
fi
