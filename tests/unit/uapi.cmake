# Every use of <linux/kvm.h> must go through vmm/kvm/kvm_uapi.hpp (see the comment there).
add_test(NAME unit.kvm_uapi_single_include
  COMMAND sh -c "! grep -rn --include='*.cpp' --include='*.hpp' --include='*.h' '#include <linux/kvm.h>' vmm devices persistence tools tests guest-images | grep -v '^vmm/kvm/kvm_uapi.hpp:'"
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(unit.kvm_uapi_single_include PROPERTIES LABELS unit)
