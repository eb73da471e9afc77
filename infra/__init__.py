"""The jobstream Pulumi program: stack config, the phase table, composition, the offline plan."""
