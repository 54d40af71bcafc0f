;; The fused AccSGD update in float32 SIMD arithmetic, in the same operation order as the
;; JavaScript float32 kernel (each multiply and add rounded to float32, no fused multiply-add), so
;; both give bit-identical results. Offsets are byte offsets into this module's memory; n is a
;; multiple of 4 (callers pad the chunk).
(module
  (memory (export "memory") 1)

  ;; buf' = (c0*buf + c1*p) + c2*g ; p' = (c3*p + c4*g) + c5*buf'
  ;; p, g, buf are read at $p, $g, $b; p' and buf' are written at $pOut and $bOut, which may equal
  ;; $p and $b (in place: each vector is read before it is written) or be fresh memory, so that a
  ;; caller whose framework caches data per tensor (tfjs's wasm backend packs matMul weights) can
  ;; write new tensors without a copy pass.
  ;; $init = 1: the buffer does not exist yet and is taken to be p (callers pass c0 = 0 and
  ;; c1 = bufFromBuf + bufFromParam), so buf is not read.
  ;; Two vectors per iteration, with a loop for each case of $init, so that the loop's own
  ;; instructions (address adds, the bound check, the branch on $init) do not make the update
  ;; compute-bound: one vector per iteration with the branch inside ran no faster from cache than
  ;; the memory floor. The arithmetic of every element is unchanged.
  (func (export "update") (param $p i32) (param $g i32) (param $b i32) (param $pOut i32) (param $bOut i32)
        (param $n i32) (param $init i32)
        (param $k0 f32) (param $k1 f32) (param $k2 f32) (param $k3 f32) (param $k4 f32) (param $k5 f32)
    (local $i i32) (local $end i32) (local $end2 i32)
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128) (local $c4 v128) (local $c5 v128)
    (local $pv v128) (local $gv v128) (local $bv v128)
    (local.set $c0 (f32x4.splat (local.get $k0)))
    (local.set $c1 (f32x4.splat (local.get $k1)))
    (local.set $c2 (f32x4.splat (local.get $k2)))
    (local.set $c3 (f32x4.splat (local.get $k3)))
    (local.set $c4 (f32x4.splat (local.get $k4)))
    (local.set $c5 (f32x4.splat (local.get $k5)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end2 (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2)))
    (if (local.get $init)
      (then
        (block $first2 (loop $first2n
          (br_if $first2 (i32.ge_u (local.get $i) (local.get $end2)))
          (local.set $pv (v128.load (i32.add (local.get $p) (local.get $i))))
          (local.set $gv (v128.load (i32.add (local.get $g) (local.get $i))))
          (local.set $bv (f32x4.add (f32x4.mul (local.get $c1) (local.get $pv)) (f32x4.mul (local.get $c2) (local.get $gv))))
          (v128.store (i32.add (local.get $bOut) (local.get $i)) (local.get $bv))
          (v128.store (i32.add (local.get $pOut) (local.get $i)) (f32x4.add (f32x4.add (f32x4.mul (local.get $c3) (local.get $pv)) (f32x4.mul (local.get $c4) (local.get $gv))) (f32x4.mul (local.get $c5) (local.get $bv))))
          (local.set $pv (v128.load offset=16 (i32.add (local.get $p) (local.get $i))))
          (local.set $gv (v128.load offset=16 (i32.add (local.get $g) (local.get $i))))
          (local.set $bv (f32x4.add (f32x4.mul (local.get $c1) (local.get $pv)) (f32x4.mul (local.get $c2) (local.get $gv))))
          (v128.store offset=16 (i32.add (local.get $bOut) (local.get $i)) (local.get $bv))
          (v128.store offset=16 (i32.add (local.get $pOut) (local.get $i)) (f32x4.add (f32x4.add (f32x4.mul (local.get $c3) (local.get $pv)) (f32x4.mul (local.get $c4) (local.get $gv))) (f32x4.mul (local.get $c5) (local.get $bv))))
          (local.set $i (i32.add (local.get $i) (i32.const 32)))
          (br $first2n)))
        (block $first1 (loop $first1n
          (br_if $first1 (i32.ge_u (local.get $i) (local.get $end)))
          (local.set $pv (v128.load (i32.add (local.get $p) (local.get $i))))
          (local.set $gv (v128.load (i32.add (local.get $g) (local.get $i))))
          (local.set $bv (f32x4.add (f32x4.mul (local.get $c1) (local.get $pv)) (f32x4.mul (local.get $c2) (local.get $gv))))
          (v128.store (i32.add (local.get $bOut) (local.get $i)) (local.get $bv))
          (v128.store (i32.add (local.get $pOut) (local.get $i)) (f32x4.add (f32x4.add (f32x4.mul (local.get $c3) (local.get $pv)) (f32x4.mul (local.get $c4) (local.get $gv))) (f32x4.mul (local.get $c5) (local.get $bv))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br $first1n))))
      (else
        (block $later2 (loop $later2n
          (br_if $later2 (i32.ge_u (local.get $i) (local.get $end2)))
          (local.set $pv (v128.load (i32.add (local.get $p) (local.get $i))))
          (local.set $gv (v128.load (i32.add (local.get $g) (local.get $i))))
          (local.set $bv (f32x4.add (f32x4.add (f32x4.mul (local.get $c0) (v128.load (i32.add (local.get $b) (local.get $i)))) (f32x4.mul (local.get $c1) (local.get $pv))) (f32x4.mul (local.get $c2) (local.get $gv))))
          (v128.store (i32.add (local.get $bOut) (local.get $i)) (local.get $bv))
          (v128.store (i32.add (local.get $pOut) (local.get $i)) (f32x4.add (f32x4.add (f32x4.mul (local.get $c3) (local.get $pv)) (f32x4.mul (local.get $c4) (local.get $gv))) (f32x4.mul (local.get $c5) (local.get $bv))))
          (local.set $pv (v128.load offset=16 (i32.add (local.get $p) (local.get $i))))
          (local.set $gv (v128.load offset=16 (i32.add (local.get $g) (local.get $i))))
          (local.set $bv (f32x4.add (f32x4.add (f32x4.mul (local.get $c0) (v128.load offset=16 (i32.add (local.get $b) (local.get $i)))) (f32x4.mul (local.get $c1) (local.get $pv))) (f32x4.mul (local.get $c2) (local.get $gv))))
          (v128.store offset=16 (i32.add (local.get $bOut) (local.get $i)) (local.get $bv))
          (v128.store offset=16 (i32.add (local.get $pOut) (local.get $i)) (f32x4.add (f32x4.add (f32x4.mul (local.get $c3) (local.get $pv)) (f32x4.mul (local.get $c4) (local.get $gv))) (f32x4.mul (local.get $c5) (local.get $bv))))
          (local.set $i (i32.add (local.get $i) (i32.const 32)))
          (br $later2n)))
        (block $later1 (loop $later1n
          (br_if $later1 (i32.ge_u (local.get $i) (local.get $end)))
          (local.set $pv (v128.load (i32.add (local.get $p) (local.get $i))))
          (local.set $gv (v128.load (i32.add (local.get $g) (local.get $i))))
          (local.set $bv (f32x4.add (f32x4.add (f32x4.mul (local.get $c0) (v128.load (i32.add (local.get $b) (local.get $i)))) (f32x4.mul (local.get $c1) (local.get $pv))) (f32x4.mul (local.get $c2) (local.get $gv))))
          (v128.store (i32.add (local.get $bOut) (local.get $i)) (local.get $bv))
          (v128.store (i32.add (local.get $pOut) (local.get $i)) (f32x4.add (f32x4.add (f32x4.mul (local.get $c3) (local.get $pv)) (f32x4.mul (local.get $c4) (local.get $gv))) (f32x4.mul (local.get $c5) (local.get $bv))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br $later1n))))))

    ;; 1 when n float32 values at $g (n a multiple of 4) are all finite, else 0. v - v is 0 for finite
  ;; v and NaN for infinities and NaN, and a sum that has met a NaN stays NaN, so running sums of
  ;; v - v are NaN exactly when some value is not finite; NaN is the only value unequal to itself.
  ;; The values are read as four streams (the four quarters, one vector of each per iteration, each
  ;; into its own sum): one sequential stream left the scan waiting on memory at about half the
  ;; bandwidth that the update's five streams reach. Then the vectors left over, one at a time.
  (func (export "allFinite") (param $g i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $quarter i32) (local $half i32) (local $three i32) (local $q1 i32)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128) (local $v v128)
    ;; bytes in each quarter: a whole number of vectors
    (local.set $quarter (i32.shl (i32.shr_u (local.get $n) (i32.const 4)) (i32.const 4)))
    (local.set $half (i32.shl (local.get $quarter) (i32.const 1)))
    (local.set $three (i32.add (local.get $half) (local.get $quarter)))
    (local.set $q1 (i32.add (local.get $g) (local.get $quarter)))
    (local.set $i (local.get $g))
    (block $done4
      (loop $next4
        (br_if $done4 (i32.ge_u (local.get $i) (local.get $q1)))
        (local.set $v (v128.load (local.get $i)))
        (local.set $a (f32x4.add (local.get $a) (f32x4.sub (local.get $v) (local.get $v))))
        (local.set $v (v128.load (i32.add (local.get $i) (local.get $quarter))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.sub (local.get $v) (local.get $v))))
        (local.set $v (v128.load (i32.add (local.get $i) (local.get $half))))
        (local.set $c (f32x4.add (local.get $c) (f32x4.sub (local.get $v) (local.get $v))))
        (local.set $v (v128.load (i32.add (local.get $i) (local.get $three))))
        (local.set $d (f32x4.add (local.get $d) (f32x4.sub (local.get $v) (local.get $v))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next4)))
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $i (i32.add (local.get $g) (i32.shl (local.get $quarter) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $v (v128.load (local.get $i)))
        (local.set $a (f32x4.add (local.get $a) (f32x4.sub (local.get $v) (local.get $v))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next)))
    (local.set $a (f32x4.add (f32x4.add (local.get $a) (local.get $b)) (f32x4.add (local.get $c) (local.get $d))))
    (i32x4.all_true (f32x4.eq (local.get $a) (local.get $a))))
)
