// Who a writer is in a table slot, as the client and the slot operations both need it.
#pragma once

#include <cstdint>

namespace shmtimer::detail {

// The Ready control word a writer claimed or found (its pid and the claim's generation)
// and its identity. Arms are bound to this identity, not to what the slot holds when the
// arm lands (src/slot_ops.hpp).
struct Ownership {
  std::uint64_t control = 0;
  std::uint64_t identity = 0;
};

}  // namespace shmtimer::detail
