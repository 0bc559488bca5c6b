"""kvmready: can this Linux host run a KVM-backed VMware Workstation?"""

__version__ = "0.1.0"
