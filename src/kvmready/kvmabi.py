"""The KVM user-space interface facts that several layers share.

Source: Documentation/virt/kvm/api.rst ("Applications should refuse to run
if KVM_GET_API_VERSION returns a value other than 12"; the API is stable
since Linux 2.6.22) and include/uapi/linux/kvm.h.
"""

KVM_DEVICE = "/dev/kvm"
KVM_API_VERSION = 12
