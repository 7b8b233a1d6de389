"""Layer 1, the crypto core: what every backend and scheme stands on.

Paillier keys and primes (``paillier``, ``primes``), the fixed-point and slot-packed encodings
(``encoding``, ``packing``), ciphertext batches and their fixed-width limbs (``batch``, ``limbs``),
secret permutations (``permutations``) and CSPRNG helpers (``secure_random``).

Layer rule: crypto <- backends <- schemes <- learning <- bench, deploy <- cli. Modules here import only
each other and ``dphe_bench.errors`` / ``dphe_bench.files``; nothing here imports a layer above.
"""
