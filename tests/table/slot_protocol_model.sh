#!/usr/bin/env bash
# The slot protocol's model (src/table/model/slot_protocol.pml), checked with spin:
#   1. every configuration below verifies, exhaustively, with no assertion violated;
#   2. each LTL formula ("eventually": a due arm is served, a lost slot freed, a lost bit
#      restored) holds on every infinite run;
#   3. each mutant (one ordering of the code weakened, or the walk for lost bits removed,
#      in the model) yields a counter-example, so the model can tell right from wrong.
#   slot_protocol_model.sh WORK_DIR [--large]
# --large: the bigger bounds (two slots, two workers, longer clock; not in CI: minutes to
# hours). Each run prints its state count and time; docs/reliability.md quotes them.
set -euo pipefail
work=$1
large=${2:-}
model=$(cd "$(dirname "$0")/../../src/table/model" && pwd)/slot_protocol.pml
command -v spin >/dev/null || { echo "slot_protocol_model: spin is not installed (Debian's spin; ./dev.sh installs it)" >&2; exit 1; }
mkdir -p "$work"
cd "$work"
failed=0

# check NAME EXPECT DEFINES...: the assertions. EXPECT is "verifies" or "counter-example".
check() { search "$1" "$2" "" "${@:3}"; }
# check_ltl NAME EXPECT CLAIM DEFINES...: one LTL formula of the model (-DLIVENESS), over
# every infinite run (acceptance cycles); assertions are the safety runs' job (-A).
check_ltl() { search "$1" "$2" "$3" -DLIVENESS "${@:4}"; }

search() {
  local name=$1 expect=$2 claim=$3; shift 3
  local cflags=(-DSAFETY) panflags=(-E)
  [[ -n $claim ]] && cflags=() panflags=(-a -A -N "$claim")
  rm -f pan pan.* ./*.trail
  spin -a "$@" "$model" >spin.log 2>&1 || { cat spin.log; echo "FAIL $name: spin -a failed"; failed=1; return; }
  gcc -O2 "${cflags[@]}" -DMEMLIM=4096 -DCOLLAPSE -o pan pan.c 2>gcc.log || { cat gcc.log; echo "FAIL $name: pan does not build"; failed=1; return; }
  local started=$SECONDS
  ./pan "${panflags[@]}" -m3000000 >pan.log 2>&1 || true
  local states errors
  states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' pan.log)
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.log)
  if grep -q "memory limit\|max search depth too small\|out of memory" pan.log; then
    echo "FAIL $name: the search was cut short"; cat pan.log; failed=1; return
  fi
  if [[ -n $claim ]] && ! grep -q "never claim[[:space:]]*+ ($claim)" pan.log; then
    echo "FAIL $name: the search did not use the claim $claim"; cat pan.log; failed=1; return
  fi
  if [[ $expect == verifies && $errors == 0 ]]; then
    echo "ok   $name: verified${claim:+ $claim}, $states states, $((SECONDS - started)) s ($*)"
  elif [[ $expect == counter-example && ${errors:-0} != 0 ]]; then
    echo "ok   $name: counter-example, $(grep -m1 'violated\|acceptance cycle' pan.log | sed 's/^pan:1: //')${claim:+ of $claim} ($*)"
  else
    echo "FAIL $name: expected $expect, got errors=${errors:-?} ($*)"; tail -20 pan.log; failed=1
  fi
}

# The protocol as written: x86-64 (TSO) and ARMv8.
check wake-and-kill          verifies
check wake-and-kill-arm      verifies -DARM
check pid-reuse-and-sweep    verifies -DPID_REUSE
check pid-reuse-arm          verifies -DARM -DPID_REUSE
check give-back-race-arm     verifies -DARM -DGIVE_BACK -DTMAX=2
check deaths                 verifies -DSERVER_DEATHS=1 -DCLIENT_DEATHS=1
# The orderings the code argues, each weakened: the model must find the bug.
check mutant-round-marker-release   counter-example -DORD_MARKER=RELEASE
check mutant-give-back-relaxed      counter-example -DARM -DGIVE_BACK -DTMAX=2 -DORD_GIVE_BACK=RELAXED
check mutant-occupancy-relaxed      counter-example -DARM -DPID_REUSE -DORD_OCCUPANCY=RELAXED
check mutant-publish-relaxed        counter-example -DARM -DPID_REUSE -DORD_PUBLISH=RELAXED
# "Eventually", as LTL: a due arm is served, a lost slot freed, a lost bit restored.
check_ltl ltl-due-arm-served     verifies due_arm_is_served   -DCLIENT_DEATHS=1
check_ltl ltl-lost-slot-freed    verifies lost_slot_is_freed  -DCLIENT_DEATHS=1
check_ltl ltl-lost-bit-restored  verifies lost_bit_is_restored
# Without the server's walk for lost bits, a slot claimed by a worker killed before its
# set_occupancy is never freed, and (with the occupancy mutant) a due arm never served.
check_ltl mutant-no-lost-bit-walk            counter-example lost_slot_is_freed -DLOST_BIT_WALK=0 -DCLIENT_DEATHS=1
check_ltl mutant-no-walk-occupancy-relaxed   counter-example due_arm_is_served -DLOST_BIT_WALK=0 -DARM -DPID_REUSE -DORD_OCCUPANCY=RELAXED
if [[ $large == --large ]]; then
  check two-slots-two-workers  verifies -DNS=2 -DWORKERS=2
  check two-slots-arm          verifies -DARM -DNS=2 -DWORKERS=2
  check deaths-arm             verifies -DARM -DSERVER_DEATHS=1 -DCLIENT_DEATHS=1 -DPID_REUSE
  check_ltl ltl-due-arm-served-arm verifies due_arm_is_served -DARM -DPID_REUSE
  check_ltl ltl-due-arm-served-occupancy-relaxed verifies due_arm_is_served -DARM -DPID_REUSE -DORD_OCCUPANCY=RELAXED
  check_ltl ltl-due-arm-served-deaths verifies due_arm_is_served -DSERVER_DEATHS=1 -DCLIENT_DEATHS=1
  check_ltl ltl-lost-slot-freed-two   verifies lost_slot_is_freed -DNS=2 -DWORKERS=2 -DCLIENT_DEATHS=1
fi
exit $failed
