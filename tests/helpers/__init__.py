"""Test helpers, by use: data (what tests build and store), http (requests and answers), servers (the real
server in its own process, which bench/ runs too)."""
