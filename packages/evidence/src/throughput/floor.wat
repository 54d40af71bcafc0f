;; The physical floor of an AccSGD step on the CPU: one WebAssembly SIMD pass that moves the bytes a
;; step moves and does nothing else. Per element it reads three float32 arrays (p, g, buf: 12 bytes)
;; and writes two (p', buf': 8 bytes), the fused update's 20 bytes, with no arithmetic: buf' is a copy
;; of buf, and p' a copy of p (or of g when $fromGradient is not 0). Choosing p or g with `select`
;; on a runtime flag keeps the load of g a real input of a store, so no engine can drop it.
;; The loop has the fused update's shape (fused-update.wat in @accsgd/core): byte offsets into the
;; imported memory, 16 bytes per iteration, n a multiple of 4. $pOut and $bOut may equal $p and $b
;; (in place, as the arena path runs): every vector is read before it is written.
(module
  (import "env" "memory" (memory 1))

  (func (export "floor") (param $p i32) (param $g i32) (param $b i32) (param $pOut i32) (param $bOut i32)
        (param $n i32) (param $fromGradient i32)
    (local $i i32) (local $end i32) (local $pv v128) (local $gv v128)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $pv (v128.load (i32.add (local.get $p) (local.get $i))))
        (local.set $gv (v128.load (i32.add (local.get $g) (local.get $i))))
        (v128.store (i32.add (local.get $bOut) (local.get $i))
          (v128.load (i32.add (local.get $b) (local.get $i))))
        (v128.store (i32.add (local.get $pOut) (local.get $i))
          (select (local.get $gv) (local.get $pv) (local.get $fromGradient)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))
)
