"""The HyperNode/Node graph (`topology.graph.Topology`): tiers, leaf domains, lowest common ancestors
and free capacity per domain, built from HyperNode CRs and Nodes (`topology.kube`), node labels
(`topology.labels`) or a topology spec file (`topology.spec`), and updated incrementally."""
