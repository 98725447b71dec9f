"""LearningChain on an Ethereum chain: the aggregation as a Vyper contract, driven through web3.

* ``contracts/learningchain.vy`` - the contract (and its compiled artefact);
* :mod:`.fixedpoint` - the contract's arithmetic in Python (its twin);
* :mod:`.contract` - building, loading and parameterising the artefact;
* :mod:`.chain` - the in-process EVM or a JSON-RPC node, transactions, revert reasons;
* :mod:`.network` - a deployed contract's client and the round driver;
* :mod:`.runner` - the contract as a backend of the run loop (``learningchain train --backend ethereum``);
* :mod:`.gas` - the gas table of docs/ETHEREUM.md.

The submodules import web3 and friends (the ``ethereum`` extra), so nothing is
imported here.
"""
