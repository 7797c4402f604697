"""AWS collectors: EC2 spot placement scores, spot prices, on-demand prices, instance types and
zone offerings, and the Spot Instance Advisor's interruption ranges (docs/collectors.md, "AWS").

Each has the shape of the Azure collectors (:class:`spotlake.collect.base.Collector`): built with
its clients and options, ``collect()``/``acollect()`` return a frame of a documented schema
(:mod:`spotlake.model`) and a report accounting for every call.
"""
