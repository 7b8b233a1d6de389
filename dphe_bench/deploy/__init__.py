"""Layer 5, deployment: the parties as network services, with Flower as the transport.

Parties and their channels:

- the key generator K runs ``keyserver`` (an HTTP(S) service speaking the binary messages of
  ``dphe_bench.schemes.messages``): it holds sk, P and every P_i; users fetch their USER_SETUP (pk, P, P_i)
  and each round's published average from it; the aggregator fetches its AGGREGATOR_SETUP (pk, every
  P_i) and posts each round's AGGREGATE to it. Each party authenticates with its own bearer token.
- the aggregator A is a Flower ServerApp (``flower_server``) running ``DpheStrategy``: it sends each
  round's instruction to the nodes and multiplies the UPDATE messages they return, without any key.
- each user U_i is a Flower ClientApp (``flower_client``) on a SuperNode: it trains locally from the
  latest average and returns its encrypted UPDATE inside a Flower message.

``local`` starts a whole federation on 127.0.0.1 (``dphe-bench serve``). Only ``flower_client``,
``flower_server`` and ``local`` need ``flwr`` (the ``flower`` extra); importing this package does not.

Layer rule: crypto <- backends <- schemes <- learning <- bench, deploy <- cli. Modules here may import
every layer below (crypto, backends, schemes, learning) and ``dphe_bench.errors`` / ``dphe_bench.files``;
never bench (its sibling) or the CLI.
"""
