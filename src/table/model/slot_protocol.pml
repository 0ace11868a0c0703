/* The slot protocol of shmtimer, as a Promela model checked by spin.
 *
 * What is modelled: the table's words (each slot's control, armed and identity words, the
 * occupancy bitmap, the header's wake_at_ns and wake_pending), worker processes that
 * claim, publish, arm, disarm and give back slots and may die at any step or exit, pid
 * reuse (a later process gets a dead one's pid with a new identity), and the server's
 * round (marker, scan, judge, signal through a pidfd, clear, sweep, plan, sleep), which
 * may die at any step and be replaced by a new server that takes the table over.
 *
 * Memory: every store goes through a per-thread store buffer, as on x86-64 (TSO): a load
 * sees its own thread's latest buffered store, else memory; a locked read-modify-write
 * (every RMW on x86-64) and a seq_cst store (XCHG) first drain the buffer. With -DARM
 * the model also allows what ARMv8 allows for operations weaker than seq_cst: stores to
 * different words leave the buffer in any order unless the later one is a release; a
 * relaxed or release compare-exchange or exchange reads at once but its write waits in
 * the buffer (the word stays reserved, so the RMW stays atomic), so later loads pass it;
 * a relaxed fetch_and/fetch_or whose result is unused is performed whole when it leaves
 * the buffer, so later loads pass its read too. Not modelled: load-load reordering of
 * plain loads (the seqlock's acquire loads are taken as ordered).
 *
 * Each step names the C++ function it stands for (src/table/slot_ops.*, server_wakeup.*,
 * src/server/reaper.cpp), and each of those functions points here: a change to one is
 * a change to this model. Each ordering the code argues is a macro ORD_<site>, as in the
 * code by default; a mutant weakens one and must get a counter-example
 * (tests/table/slot_protocol_model.sh runs the configurations and the mutants).
 *
 * Properties, as assertions (the clock and the end state check the timing ones) and, with
 * -DLIVENESS, as LTL formulas (below the Quiescence process):
 *   - never signal a process for a timer it did not arm: the signal reaches the very
 *     process (pid and identity) whose own claim's due, verified arm was judged;
 *   - no missed kill: at the end, a live server that has had a quiet round leaves no due
 *     arm of a running owner; and no server sleeps past a due arm whose wake-up step is
 *     done unless a wake-up is pending (the wake handshake);
 *   - a slot never has two owners; a live owner's slot is never freed; an arm that
 *     returned true is never freed with its slot (give_back); no slot is lost: at the end,
 *     every claimed slot has a running owner and its occupancy bit.
 */

#define RELAXED 0
#define RELEASE 1
#define ACQ_REL 2
#define SEQ_CST 3

/* The orderings of the code, one per site. */
#ifndef ORD_MARKER          /* ServerWakeup::publish_marker's store of wake_at_ns */
#define ORD_MARKER SEQ_CST
#endif
#ifndef ORD_GIVE_BACK       /* give_back_idle: CAS Ready->Claiming, then the load of armed */
#define ORD_GIVE_BACK SEQ_CST
#endif
#ifndef ORD_OCCUPANCY       /* clear_occupancy_if_free: fetch_and, then the load of control */
#define ORD_OCCUPANCY SEQ_CST
#endif
#ifndef ORD_PUBLISH         /* try_claim's CAS Claiming->Ready */
#define ORD_PUBLISH RELEASE
#endif
#ifndef ORD_FIELDS          /* try_claim's stores of the key fields (armed, identity) */
#define ORD_FIELDS RELEASE
#endif
#ifndef ORD_ARM             /* arm_slot_with_owner_mix: exchange of armed, re-load of control */
#define ORD_ARM SEQ_CST
#endif

/* Bounds (tests/table/slot_protocol_model.sh passes each configuration's). */
#ifndef NS                  /* slots */
#define NS 1
#endif
#ifndef TMAX                /* the clock runs 0..TMAX */
#define TMAX 3
#endif
#ifndef MAXI                /* the server's longest sleep (max_interval) */
#define MAXI 2
#endif
#ifndef ARMS                /* arms per worker */
#define ARMS 1
#endif
#ifndef WORKERS             /* workers at the start (each its own pid) */
#define WORKERS 1
#endif
#ifndef CLIENT_DEATHS       /* workers the killer may kill at any step */
#define CLIENT_DEATHS 0
#endif
#ifndef LOST_BIT_WALK       /* Reaper::walk_for_lost_bits each round (0: a mutant without it) */
#define LOST_BIT_WALK 1
#endif
#ifndef SERVER_DEATHS       /* servers that may die at any step (each is replaced) */
#define SERVER_DEATHS 0
#endif
/* -DPID_REUSE: a second worker gets the first one's pid once that one is gone.
   -DGIVE_BACK: the first worker's thread gives its slot back while its second thread arms
   through a handle (give_back_idle against arm_slot). The client never does this (it
   gives back only when its calls come one at a time); the protocol still promises that
   such an arm is never lost, which is what this configuration checks. The timing check
   is off here: a give-back's Claiming mark can hide an armed slot from one round, so the
   server may sleep past that deadline by up to one max_interval. */

/* Words. Slot s: control, armed, identity; then the header's. */
#define CTL(s)   (3 * (s))
#define ARMED(s) (3 * (s) + 1)
#define IDENT(s) (3 * (s) + 2)
#define BITMAP   (3 * NS)
#define WAKE_AT  (3 * NS + 1)
#define PENDING  (3 * NS + 2)
#define NW       (3 * NS + 3)

/* layout::Control: state | generation << 2 | pid << 4. */
#define FREE 0
#define CLAIMING 1
#define READY 2
#define MKCTL(st, g, p) ((st) + 4 * (g) + 16 * (p))
#define STATE(c) ((c) % 4)
#define GEN(c)   (((c) / 4) % 4)
#define PID(c)   ((c) / 16)
/* layout::ArmWord: the deadline with a check of (control, identity); 0 is disarmed. */
#define MKARM(d, c, id) ((d) * 1024 + (c) * 8 + (id))
#define DEADLINE(w) ((w) / 1024)
#define VERIFIES(w, c, id) ((w) % 1024 == (c) * 8 + (id))

/* Threads: 0 the server; 1 and 2 the first two workers; 3 the first worker's second
   thread; 4 the worker given a reused pid. */
#define NT 5
#define SB 3
int mem[NW];
byte sb_a[NT * SB];
int sb_v[NT * SB];
byte sb_k[NT * SB];  /* bit 0: release; bit 1: an RMW's write (reserves its word); bits 2-3: 0 store, 1 and-not, 2 or */
byte sb_n[NT];
byte reserved[NW];   /* 1 + the thread whose RMW's write is buffered */

#define E(t, j) ((t) * SB + (j))
#define OWN(t, a, j) (sb_n[t] > j && sb_a[E(t, j)] == (a))
#define HAS_OWN(t, a) (OWN(t, a, 0) || OWN(t, a, 1) || OWN(t, a, 2))
#define DEFERRED(t, a, j) (OWN(t, a, j) && sb_k[E(t, j)] >= 4)
#define HAS_DEFERRED(t, a) (DEFERRED(t, a, 0) || DEFERRED(t, a, 1) || DEFERRED(t, a, 2))

/* Processes, as the kernel sees them. Identity i (1..): a process; its pid is pid_of[i]. */
#define NID 4
byte pid_of[NID];
bool alive[NID];
bool stopped[NID];
byte holder[4];         /* the identity that holds each pid now (0: none) */

/* Ghosts: what the properties are stated over. */
byte claimed_by[NS];    /* the identity whose claim holds slot s (0: free) */
int claim_ctl[NID];     /* identity i's Ready word */
bool outstanding_at_free, owner_alive_at_free;
bool outstanding[NS];   /* an arm that returned true, not disarmed or cleared since */
int done_word[NS];      /* the armed word of the last arm in slot s whose wake-up step is done */
bool srv_alive, srv_asleep;
int srv_w;              /* the sleeping server's planned wake-up */
bool dirty;             /* a worker acted since the server's round began */
bool quiet;             /* the server completed a round in which no worker acted */
byte now;
bool eternity;          /* LIVENESS: the clock has reached TMAX and the model's time goes on */
byte killable = CLIENT_DEATHS;
byte srv_deaths = SERVER_DEATHS;

/* ---- memory operations; `t` is the thread ---- */

inline append(t, a, v, k) {
  sb_a[E(t, sb_n[t])] = a; sb_v[E(t, sb_n[t])] = v; sb_k[E(t, sb_n[t])] = k; sb_n[t]++
}

inline store(t, a, v, ord) {
  if
  :: ord == SEQ_CST -> atomic { sb_n[t] == 0 && reserved[a] == 0 -> mem[a] = v }  /* XCHG */
  :: else -> atomic { sb_n[t] < SB -> append(t, a, v, (ord == RELEASE -> 1 : 0)) }
  fi
}

inline load(t, a, r) {  /* the newest own buffered value, else memory */
  atomic {
    !HAS_DEFERRED(t, a);
    r = mem[a];
    if :: OWN(t, a, 0) -> r = sb_v[E(t, 0)] :: else fi;
    if :: OWN(t, a, 1) -> r = sb_v[E(t, 1)] :: else fi;
    if :: OWN(t, a, 2) -> r = sb_v[E(t, 2)] :: else fi
  }
}

#ifdef ARM
#define STRONG(ord) ((ord) >= ACQ_REL)
#else
#define STRONG(ord) 1   /* x86-64: every RMW is a locked instruction */
#endif

/* compare_exchange_strong: ok and the value seen in `r`. */
inline cas(t, a, expected, desired, ok, r, ord) {
  if
  :: STRONG(ord) ->
     atomic { sb_n[t] == 0 && reserved[a] == 0 -> r = mem[a]; ok = (r == expected); if :: ok -> mem[a] = desired :: else fi }
  :: else ->
     atomic { !HAS_OWN(t, a) && reserved[a] == 0 && sb_n[t] < SB ->
       r = mem[a]; ok = (r == expected);
       if :: ok -> append(t, a, desired, 2 + (ord == RELEASE -> 1 : 0)); reserved[a] = t + 1 :: else fi }
  fi
}

inline xchg(t, a, v, r, ord) {
  if
  :: STRONG(ord) -> atomic { sb_n[t] == 0 && reserved[a] == 0 -> r = mem[a]; mem[a] = v }
  :: else -> atomic { !HAS_OWN(t, a) && reserved[a] == 0 && sb_n[t] < SB ->
       r = mem[a]; append(t, a, v, 2 + (ord == RELEASE -> 1 : 0)); reserved[a] = t + 1 }
  fi
}

inline fetch_op(t, a, bits, op, ord) {  /* op 1: and-not, 2: or; the result is unused */
  if
  :: STRONG(ord) -> atomic { sb_n[t] == 0 && reserved[a] == 0 ->
       if :: op == 1 -> mem[a] = mem[a] & ~bits :: else -> mem[a] = mem[a] | bits fi }
  :: else -> atomic { sb_n[t] < SB -> append(t, a, bits, 4 * op + (ord == RELEASE -> 1 : 0)) }
  fi
}

/* The store buffer of thread t drains, one entry at a time, at any moment. */
proctype Flusher(byte t) {
  byte i, j, a; bool ok;
end_flusher:
  do
  :: atomic {
       sb_n[t] > 0 ->
#ifdef ARM
       if :: i = 0 :: sb_n[t] > 1 -> i = 1 :: sb_n[t] > 2 -> i = 2 fi;
#else
       i = 0;
#endif
       a = sb_a[E(t, i)];
       ok = (reserved[a] == 0 || reserved[a] == t + 1);
       j = 0;
       do  /* nothing to the same word before it; a release waits for everything before it */
       :: j < i -> ok = ok && sb_a[E(t, j)] != a && (sb_k[E(t, i)] & 1) == 0; j++
       :: else -> break
       od;
       if
       :: ok ->
          if
          :: sb_k[E(t, i)] / 4 == 1 -> mem[a] = mem[a] & ~sb_v[E(t, i)]
          :: sb_k[E(t, i)] / 4 == 2 -> mem[a] = mem[a] | sb_v[E(t, i)]
          :: else -> mem[a] = sb_v[E(t, i)]
          fi;
          if :: (sb_k[E(t, i)] & 2) != 0 -> reserved[a] = 0 :: else fi;
          j = i;
          do
          :: j + 1 < sb_n[t] -> sb_a[E(t, j)] = sb_a[E(t, j + 1)]; sb_v[E(t, j)] = sb_v[E(t, j + 1)];
                                sb_k[E(t, j)] = sb_k[E(t, j + 1)]; j++
          :: else -> break
          od;
          sb_n[t]--;
          sb_a[E(t, sb_n[t])] = 0; sb_v[E(t, sb_n[t])] = 0; sb_k[E(t, sb_n[t])] = 0
       :: else
       fi;
       i = 0; j = 0; a = 0; ok = 0
     }
  od
}

/* ---- the kernel ---- */

/* probe_process(pid, identity): runs iff that very process does. A Claiming slot has no
   identity yet: its pid alone is asked (any process with the pid runs). */
#define RUNNING(wpid, id) (holder[wpid] != 0 && ((id) == 0 || holder[wpid] == (id)) && alive[holder[wpid]])

/* A process stops at once (SIGKILL, or its own exit); it is gone (its pid free for reuse,
   every probe answering gone) once its threads' store buffers have drained, as the
   kernel's exit path does. */
inline stop(id) {
  stopped[id] = 1; dirty = 1; quiet = 0
}
inline die(id, t) {
  (sb_n[t] == 0 && (id != 1 || sb_n[3] == 0));
  atomic { holder[pid_of[id]] = 0; alive[id] = 0; dirty = 1; quiet = 0 }
}

/* free_slot: a CAS (acq_rel) from the exact word judged. Records what the properties ask
   about the slot at that instant. */
inline free_slot(t, s, expected, ok) {
  atomic { sb_n[t] == 0 && reserved[CTL(s)] == 0 ->
    ok = (mem[CTL(s)] == expected);
    if
    :: ok -> mem[CTL(s)] = MKCTL(FREE, GEN(expected), 0);
             outstanding_at_free = outstanding[s];
             owner_alive_at_free = (claimed_by[s] != 0 && alive[claimed_by[s]]);
             claimed_by[s] = 0; outstanding[s] = 0; dirty = 1; quiet = 0
    :: else
    fi }
}

/* ---- the worker: ShmTimerClient, one slot ---- */

/* try_claim: Free -> Claiming (seq_cst CAS), set_occupancy, the key fields (release),
   Claiming -> Ready (release CAS). */
inline try_claim(t, s, wpid, id, ready, ok) {
  load(t, CTL(s), c);
  if
  :: STATE(c) == FREE ->
     claiming = MKCTL(CLAIMING, (GEN(c) + 1) % 4, wpid);
     atomic { sb_n[t] == 0 && reserved[CTL(s)] == 0 ->             /* seq_cst CAS */
       ok = (mem[CTL(s)] == c);
       if
       :: ok -> mem[CTL(s)] = claiming;
                assert(claimed_by[s] == 0);                        /* never two owners */
                claimed_by[s] = id; outstanding[s] = 0; dirty = 1; quiet = 0
       :: else
       fi };
     if
     :: ok ->
        fetch_op(t, BITMAP, 1 << s, 2, SEQ_CST);                   /* set_occupancy */
        store(t, ARMED(s), 0, ORD_FIELDS);
        store(t, IDENT(s), id, ORD_FIELDS);
        ready = MKCTL(READY, GEN(claiming), wpid);
        claim_ctl[id] = ready;
        cas(t, CTL(s), claiming, ready, ok, r, ORD_PUBLISH)
     :: else
     fi
  :: else -> ok = 0
  fi
}

/* arm_slot_with_owner_mix, then wake_server_for / request_wakeup. */
inline arm(t, s, id, ready, d, ok) {
  load(t, CTL(s), c);
  if
  :: c == ready ->
     word = MKARM(d, ready, id);
     done_word[s] = 0;
     xchg(t, ARMED(s), word, old, ORD_ARM);
     load(t, CTL(s), c);
     if
     :: c == ready ->
        atomic { ok = 1; outstanding[s] = 1; dirty = 1; quiet = 0 };
        load(t, WAKE_AT, r);                                       /* wake_server_for */
        if
        :: d < r ->
           load(t, PENDING, r);                                    /* raise_pending */
           if :: r == 0 -> xchg(t, PENDING, 1, r, SEQ_CST) :: else fi /* FUTEX_WAKE: the server's wait ends */
        :: else
        fi;
        done_word[s] = word
     :: else -> cas(t, ARMED(s), word, old, ok, r, ACQ_REL); ok = 0 /* undo; the caller rebinds */
     fi
  :: else -> ok = 0
  fi
}

/* disarm_slot: the ownership check, then a release store. */
inline disarm(t, s, id, ready) {
  atomic { outstanding[s] = 0; dirty = 1; quiet = 0 };
  load(t, CTL(s), c);
  if :: c == ready -> store(t, ARMED(s), 0, RELEASE) :: else fi
}

/* give_back_idle: Ready -> Claiming (the mark), the load of armed, then free_slot or
   restore Ready. */
inline give_back(t, s, ready) {
  load(t, ARMED(s), r);
  if
  :: r == 0 ->
     marked = MKCTL(CLAIMING, GEN(ready), PID(ready));
     cas(t, CTL(s), ready, marked, ok, r, ORD_GIVE_BACK);
     if
     :: ok ->
        load(t, ARMED(s), r);                       /* ORD_GIVE_BACK: its load is seq_cst in the code */
        if
        :: r != 0 -> store(t, CTL(s), ready, RELEASE)
        :: else ->
           free_slot(t, s, marked, ok);
           assert(!ok || !outstanding_at_free)                     /* an arm that returned true is never freed */
        fi
     :: else
     fi
  :: else
  fi
}

proctype Worker(byte t; byte id) {
  byte s, wpid, k, d;
  int c, r, old, word, claiming, ready, marked;
  bool ok;
  wpid = pid_of[id];
  {
    s = 0;
#if NS > 1
    if :: s = 0 :: s = 1 fi;
#endif
    try_claim(t, s, wpid, id, ready, ok);
    if
    :: !ok -> goto done
    :: else
    fi;
    k = 0;
#ifdef GIVE_BACK
    if :: id == 1 -> k = ARMS :: else fi;  /* its handle thread arms */
#endif
    do
    :: k < ARMS ->
       if :: d = now + 1 :: d = now + 2 fi;
       arm(t, s, id, ready, d, ok);
       if
       :: !ok -> break
       :: ok -> disarm(t, s, id, ready)   /* punctual */
       :: ok -> false                     /* hung: never returns (until killed) */
       fi;
       k++
    :: else -> break
    od;
#ifdef GIVE_BACK
    if :: id == 1 -> give_back(t, s, ready) :: else fi;
#endif
done:
    atomic { stop(id) }   /* exits: what it holds is left to the sweep */
  } unless { stopped[id] };
  die(id, t)
}

#ifdef GIVE_BACK
/* The first worker's second thread, arming through a Timer handle bound to its slot while
   the first thread may give the slot back. */
proctype HandleThread(byte t; byte id) {
  byte s = 0, d;
  int c, r, old, word, ready;
  bool ok;
  {
    (claimed_by[0] == id);
    load(t, CTL(0), ready);
    STATE(ready) == READY;
    d = now + 2;
    arm(t, s, id, ready, d, ok);
    if :: ok -> disarm(t, s, id, ready) :: else fi
  } unless { stopped[id] }
}
#endif

/* ---- the server ---- */

/* The kill: LinuxProcessControl::check_and_signal through a pidfd held on (pid, identity):
   the signal reaches that very process or none. */
inline signal(wpid, id, w, s, c) {
  atomic {
    if
    :: RUNNING(wpid, id) ->
       assert(holder[wpid] == id);                 /* never a process that did not own the timer */
       assert(claim_ctl[id] == c && VERIFIES(w, c, id) && DEADLINE(w) <= now); /* its own claim's timer, due */
       if :: !stopped[id] -> stop(id) :: else fi
    :: else
    fi
  }
}

proctype Server() {
  byte s, sweep_s;
  int c, c2, w, id, r, m, wake, promised, next;
  bool ok, expired;
  byte gone[NS];     /* the control word to free each slot from, judged by the sweep (0: none) */
  byte due_s[NS];    /* 1 + the slot of a due, verified timer */
  int due_w[NS];
  int due_c[NS];
  int due_id[NS];
  {
    /* TimerServer's takeover: rebuild_occupancy, then every round sweeps (dead_owner_sweep). */
    s = 0;
    do
    :: s < NS -> load(0, CTL(s), c); if :: STATE(c) != FREE -> fetch_op(0, BITMAP, 1 << s, 2, SEQ_CST) :: else fi; s++
    :: else -> break
    od;
    do
    :: atomic { dirty = 0 };
       /* ServerWakeup::publish_marker */
       promised = now + MAXI;
       store(0, WAKE_AT, promised, ORD_MARKER);
       load(0, PENDING, r);
       if :: r != 0 -> xchg(0, PENDING, 0, r, SEQ_CST) :: else fi;
#if LOST_BIT_WALK
       /* Reaper::walk_for_lost_bits */
       s = 0;
       do
       :: s < NS -> load(0, CTL(s), c); if :: STATE(c) != FREE -> fetch_op(0, BITMAP, 1 << s, 2, SEQ_CST) :: else fi; s++
       :: else -> break
       od;
#endif
rescan:
       /* Reaper::scan over for_each_occupied */
       next = 0;
       load(0, BITMAP, m);
       s = 0;
       do
       :: s < NS ->
          gone[s] = 0; due_s[s] = 0;
          if
          :: (m & (1 << s)) != 0 ->
             load(0, CTL(s), c);
             if
             :: STATE(c) == FREE ->                                  /* clear_occupancy_if_free */
                fetch_op(0, BITMAP, 1 << s, 1, ORD_OCCUPANCY);
                load(0, CTL(s), c2);
                if :: STATE(c2) != FREE -> fetch_op(0, BITMAP, 1 << s, 2, SEQ_CST) :: else fi
             :: STATE(c) == CLAIMING ->                               /* note_if_owner_gone */
                if :: !RUNNING(PID(c), 0) -> gone[s] = c :: else fi
             :: STATE(c) == READY ->
                load(0, IDENT(s), id);
                if :: !RUNNING(PID(c), id) -> gone[s] = c :: else fi;
                load(0, ARMED(s), w);                                 /* seq_cst in the code */
                if
                :: w != 0 && DEADLINE(w) > now ->
                   if :: next == 0 || DEADLINE(w) < next -> next = DEADLINE(w) :: else fi
                :: w != 0 && DEADLINE(w) <= now ->                    /* consider_due: read_slot */
                   load(0, CTL(s), c);
                   if
                   :: STATE(c) == READY ->
                      load(0, ARMED(s), w); load(0, IDENT(s), id); load(0, CTL(s), c2);
                      if
                      :: c2 == c && w != 0 && DEADLINE(w) <= now && VERIFIES(w, c, id) ->
                         due_s[s] = s + 1; due_w[s] = w; due_c[s] = c; due_id[s] = id
                      :: else
                      fi
                   :: else
                   fi
                :: else
                fi
             :: else
             fi
          :: else
          fi;
          s++
       :: else -> break
       od;
       /* Reaper::signal_process, then disarm_seen's disarm_if_unchanged */
       s = 0;
       do
       :: s < NS ->
          if
          :: due_s[s] != 0 ->
             signal(PID(due_c[s]), due_id[s], due_w[s], s, due_c[s]);
             expired = 1;
             atomic { sb_n[0] == 0 && reserved[ARMED(s)] == 0 ->     /* disarm_if_unchanged: acq_rel CAS */
               if :: mem[ARMED(s)] == due_w[s] -> mem[ARMED(s)] = 0; outstanding[s] = 0 :: else fi }
          :: else
          fi;
          s++
       :: else -> break
       od;
       /* Reaper::free_gone_owners: a CAS from the exact word judged */
       s = 0;
       do
       :: s < NS ->
          if
          :: gone[s] != 0 ->
             free_slot(0, s, gone[s], ok);
             assert(!ok || !owner_alive_at_free)                     /* never a live owner's slot */
          :: else
          fi;
          s++
       :: else -> break
       od;
       /* ServerWakeup::publish_plan */
       wake = promised;
       if :: next != 0 && next < wake -> wake = next :: else fi;
       if :: wake < promised -> promised = wake; store(0, WAKE_AT, wake, SEQ_CST) :: else fi;
       load(0, PENDING, r);
       if
       :: r != 0 -> xchg(0, PENDING, 0, r, SEQ_CST); if :: r != 0 -> goto rescan :: else fi
       :: else
       fi;
       atomic { if :: !dirty -> quiet = 1 :: else fi };
       if :: expired -> expired = 0; goto round_end :: else fi;   /* expiries: spin, no sleep */
       /* ServerWakeup::sleep_until: FUTEX_WAIT on wake_pending (the kernel's futex lock
          drains the store buffer first) until the plan */
       (sb_n[0] == 0);
       atomic { srv_w = promised; srv_asleep = 1 };
       atomic { (mem[PENDING] != 0 || now >= srv_w || eternity) -> srv_asleep = 0 };
round_end:
       skip
    od
  } unless { !srv_alive }
}

/* Kills a worker at any step (SIGKILL from outside), or the server. */
active proctype Killer() {
  byte i;
end_killer:
  do
  :: atomic { now < TMAX && killable > 0 && alive[1] && !stopped[1] -> killable--; stop(1) }
  :: atomic { now < TMAX && killable > 0 && alive[2] && !stopped[2] -> killable--; stop(2) }
  :: atomic { now < TMAX && killable > 0 && alive[3] && !stopped[3] -> killable--; stop(3) }
  :: atomic { now < TMAX && srv_deaths > 0 && srv_alive -> srv_deaths--; srv_alive = 0; srv_asleep = 0; quiet = 0 };
     atomic { srv_alive = 1; run Server() }  /* the next server takes the table over */
  od
}

/* The clock. Before each tick: no server sleeps past a due timer that a live worker armed
   and finished arming (its wake-up step done), unless a wake-up is pending. */
/* Slot s holds a finished arm (its wake-up step done) of a live, running owner, due
   before `t`. */
#define DUE_ARM(s, t) (mem[ARMED(s)] != 0 && mem[ARMED(s)] == done_word[s] && claimed_by[s] != 0 && \
                       alive[claimed_by[s]] && !stopped[claimed_by[s]] && DEADLINE(mem[ARMED(s)]) < (t))

active proctype Clock() {
  byte i;
end_clock:
  do
  :: now < TMAX ->
     atomic {
       i = 0;
       do
       :: i < NS ->
#ifndef GIVE_BACK  /* a give-back racing an arm hides the slot (Claiming) from a round: see GIVE_BACK */
          assert(!(srv_asleep && mem[PENDING] == 0 && srv_w > now && DUE_ARM(i, now + 1)));
#endif
          i++
       :: else -> break
       od;
       i = 0;
       now++
     }
#ifdef LIVENESS
  :: else -> eternity = 1; break  /* past TMAX every sleep ends: the server's max_interval */
#else
  :: else -> break
#endif
  od
}

/* When nothing can move any more (the clock at TMAX, the server asleep): a server that is
   alive and has completed a round since the last worker's step has signalled every due
   timer, freed every slot whose owner is gone, and no claimed slot lacks its bit. */
active proctype Quiescence() {
  byte s, i;
  timeout ->
  atomic {
    if
    :: srv_alive && quiet && now == TMAX ->
       s = 0;
       do
       :: s < NS -> assert(!DUE_ARM(s, now)); s++  /* no missed kill */
       :: else -> break
       od;
       s = 0;
       do
       :: s < NS ->
          assert(STATE(mem[CTL(s)]) == FREE || (claimed_by[s] != 0 && alive[claimed_by[s]])); /* no slot lost */
          assert(STATE(mem[CTL(s)]) == FREE || (mem[BITMAP] & (1 << s)) != 0);             /* no lost bit */
          s++
       :: else -> break
       od
    :: else
    fi
  }
}

#ifdef LIVENESS
/* The properties "eventually", as LTL over every infinite run (the server runs rounds
   forever once the clock has reached TMAX). Stated per slot; the CI bound has one.
   A due arm (its wake-up step done) of a live, running owner is eventually signalled or
   disarmed, or its owner stops (no missed kill): */
#define DUE_NOW(s) DUE_ARM(s, now + 1)
/* A claimed slot whose owner is gone is eventually freed (no slot lost forever): */
#define LOST(s) (STATE(mem[CTL(s)]) != FREE && (claimed_by[s] == 0 || !alive[claimed_by[s]]))
/* A claimed slot without its occupancy bit eventually has it again, or is freed: */
#define BITLESS(s) (STATE(mem[CTL(s)]) != FREE && (mem[BITMAP] & (1 << s)) == 0)
#if NS == 1
ltl due_arm_is_served { [] (DUE_NOW(0) -> <> !DUE_NOW(0)) }
ltl lost_slot_is_freed { [] (LOST(0) -> <> !LOST(0)) }
ltl lost_bit_is_restored { [] (BITLESS(0) -> <> !BITLESS(0)) }
#else
ltl due_arm_is_served { [] ((DUE_NOW(0) -> <> !DUE_NOW(0)) && (DUE_NOW(1) -> <> !DUE_NOW(1))) }
ltl lost_slot_is_freed { [] ((LOST(0) -> <> !LOST(0)) && (LOST(1) -> <> !LOST(1))) }
ltl lost_bit_is_restored { [] ((BITLESS(0) -> <> !BITLESS(0)) && (BITLESS(1) -> <> !BITLESS(1))) }
#endif
#endif

init {
  atomic {
    pid_of[1] = 1; pid_of[2] = 2; pid_of[3] = 1;
    alive[1] = 1; holder[1] = 1;
#if WORKERS > 1
    alive[2] = 1; holder[2] = 2;
#endif
    mem[WAKE_AT] = 0;
    run Flusher(0); run Flusher(1); run Flusher(2); run Flusher(3); run Flusher(4);
    srv_alive = 1; run Server();
    run Worker(1, 1);
#if WORKERS > 1
    run Worker(2, 2);
#endif
#ifdef GIVE_BACK
    run HandleThread(3, 1);
#endif
  }
#ifdef PID_REUSE
  /* Identity 3 is a later process given pid 1 once identity 1 is gone. */
  (holder[1] == 0);
  atomic { alive[3] = 1; holder[1] = 3; run Worker(4, 3) }
#endif
}
