"""The contract between the stack and the services: the phase table, the routing document,
resource names, metric names, the worker's environment variables and exit statuses.

Standard library only: the Pulumi program, the operator commands and the service runtime all
import it, and nothing else defines what it defines.
"""
