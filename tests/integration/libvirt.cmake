# nvhv's libvirt hook (tools/libvirt-hook, docs/libvirt.md), installed by `cmake --install
# --component libvirt-hook` into a scratch directory and run by Debian's libvirtd, which each test
# starts itself in a private mount namespace with its own configuration and hook directory.
# Exit 77 (skipped) without root, libvirtd, virsh, QEMU or KVM.
set(_libvirt_test ${CMAKE_CURRENT_LIST_DIR}/libvirt_hook_test.py)
add_test(NAME libvirt.hook_command_line COMMAND python3 ${_libvirt_test} ${CMAKE_BINARY_DIR} HookCommandLine)
set_tests_properties(libvirt.hook_command_line PROPERTIES LABELS "libvirt;integration" TIMEOUT 120)
foreach(_case DaemonHooks DomainHooks)
  add_test(NAME libvirt.${_case} COMMAND python3 ${_libvirt_test} ${CMAKE_BINARY_DIR} ${_case})
  # Serial like every KVM test; the lock also keeps two private libvirtds from sharing the
  # mountpoint directories that each creates and removes.
  set_tests_properties(libvirt.${_case} PROPERTIES LABELS "libvirt;integration;kvm" TIMEOUT 300
    RUN_SERIAL TRUE RESOURCE_LOCK libvirt_mountpoints SKIP_RETURN_CODE 77)
endforeach()
