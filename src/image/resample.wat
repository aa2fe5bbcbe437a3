;; The two passes of resample.ts's filter in WebAssembly SIMD128 (no relaxed SIMD): along y in
;; fixed point (int16 weights, exact int32 sums), along x and the normalisation in float32.
;; scripts/build-wasm.mjs assembles this file into resample-wasm.ts; resample.ts lays out the
;; memory (source rows, accumulator lines, taps) and calls the two functions.
(module
  (memory (export "memory") 1)

  ;; Along stored y, two lines from the same rows at once, in integers: accA[x] += Σ_j weightsA[j] ·
  ;; rows[j·rowBytes + x] and the same for B, for x below `bytes` rounded up to 16 (so rows need 15
  ;; readable bytes past their end, acc lines whole vectors), each from 0 when its `fresh` flag is
  ;; set. Weights are int16 (resample.ts scales them to fixed point), acc int32 aligned to 16. Rows
  ;; are taken two at a time: their 16 bytes interleaved and widened to int16 pairs, so one
  ;; i32x4.dot_i16x8_s adds both rows' products for four samples (two rows cost what one did in
  ;; float32, where widening each row to floats cost as much as its multiply-adds); an odd count's
  ;; first row goes alone. Integer sums are exact, so they depend neither on the order of the taps
  ;; nor on how they are split over calls. `taps` is at least 1. One line alone is passed as both A
  ;; and B: the same sums, stored twice. Rows are 8-bit samples (RGB interleaved, any channel).
  (func (export "vertical")
    (param $rows i32) (param $rowBytes i32) (param $taps i32) (param $bytes i32)
    (param $weightsA i32) (param $accA i32) (param $freshA i32)
    (param $weightsB i32) (param $accB i32) (param $freshB i32)
    (local $x i32) (local $p i32) (local $wa i32) (local $wb i32) (local $end i32) (local $partner i32) (local $advance i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local $ka v128) (local $kb v128) (local $v v128) (local $u v128) (local $h v128)
    (local.set $end (i32.add (local.get $weightsA) (i32.shl (local.get $taps) (i32.const 1))))
    (block $done
      (loop $columns
        (br_if $done (i32.ge_u (local.get $x) (local.get $bytes)))
        (if (local.get $freshA)
          (then
            (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
            (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0)))
          (else
            (local.set $a0 (v128.load offset=0 (local.get $accA))) (local.set $a1 (v128.load offset=16 (local.get $accA)))
            (local.set $a2 (v128.load offset=32 (local.get $accA))) (local.set $a3 (v128.load offset=48 (local.get $accA)))))
        (if (local.get $freshB)
          (then
            (local.set $b0 (v128.const i32x4 0 0 0 0)) (local.set $b1 (v128.const i32x4 0 0 0 0))
            (local.set $b2 (v128.const i32x4 0 0 0 0)) (local.set $b3 (v128.const i32x4 0 0 0 0)))
          (else
            (local.set $b0 (v128.load offset=0 (local.get $accB))) (local.set $b1 (v128.load offset=16 (local.get $accB)))
            (local.set $b2 (v128.load offset=32 (local.get $accB))) (local.set $b3 (v128.load offset=48 (local.get $accB)))))
        (local.set $p (i32.add (local.get $rows) (local.get $x)))
        (local.set $wa (local.get $weightsA))
        (local.set $wb (local.get $weightsB))
        ;; Pairs of rows (weights read two at a time); an odd count starts with its first row alone,
        ;; paired with itself and a weight of 0, so one loop body serves both (a separate last step for
        ;; the odd row measured 2-3 % faster over a frame, and repeated the body).
        (if (i32.and (local.get $taps) (i32.const 1))
          (then
            (local.set $ka (i32x4.splat (i32.load16_u (local.get $wa))))
            (local.set $kb (i32x4.splat (i32.load16_u (local.get $wb))))
            (local.set $partner (i32.const 0))
            (local.set $advance (i32.const 2)))
          (else
            (local.set $ka (v128.load32_splat (local.get $wa)))
            (local.set $kb (v128.load32_splat (local.get $wb)))
            (local.set $partner (local.get $rowBytes))
            (local.set $advance (i32.const 4))))
        (block $pairsDone
          (loop $pair
            (local.set $v (v128.load (local.get $p)))
            (local.set $u (v128.load (i32.add (local.get $p) (local.get $partner))))
            (local.set $h (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $v) (local.get $u)))
            (local.set $u (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $v) (local.get $u)))
            (local.set $v (i16x8.extend_low_i8x16_u (local.get $h)))
            (local.set $a0 (i32x4.add (local.get $a0) (i32x4.dot_i16x8_s (local.get $v) (local.get $ka))))
            (local.set $b0 (i32x4.add (local.get $b0) (i32x4.dot_i16x8_s (local.get $v) (local.get $kb))))
            (local.set $v (i16x8.extend_high_i8x16_u (local.get $h)))
            (local.set $a1 (i32x4.add (local.get $a1) (i32x4.dot_i16x8_s (local.get $v) (local.get $ka))))
            (local.set $b1 (i32x4.add (local.get $b1) (i32x4.dot_i16x8_s (local.get $v) (local.get $kb))))
            (local.set $v (i16x8.extend_low_i8x16_u (local.get $u)))
            (local.set $a2 (i32x4.add (local.get $a2) (i32x4.dot_i16x8_s (local.get $v) (local.get $ka))))
            (local.set $b2 (i32x4.add (local.get $b2) (i32x4.dot_i16x8_s (local.get $v) (local.get $kb))))
            (local.set $v (i16x8.extend_high_i8x16_u (local.get $u)))
            (local.set $a3 (i32x4.add (local.get $a3) (i32x4.dot_i16x8_s (local.get $v) (local.get $ka))))
            (local.set $b3 (i32x4.add (local.get $b3) (i32x4.dot_i16x8_s (local.get $v) (local.get $kb))))
            (local.set $p (i32.add (local.get $p) (i32.add (local.get $rowBytes) (local.get $partner))))
            (local.set $wa (i32.add (local.get $wa) (local.get $advance)))
            (local.set $wb (i32.add (local.get $wb) (local.get $advance)))
            (br_if $pairsDone (i32.ge_u (local.get $wa) (local.get $end)))
            (local.set $ka (v128.load32_splat (local.get $wa)))
            (local.set $kb (v128.load32_splat (local.get $wb)))
            (local.set $partner (local.get $rowBytes))
            (local.set $advance (i32.const 4))
            (br $pair)))
        (v128.store offset=0 (local.get $accA) (local.get $a0)) (v128.store offset=16 (local.get $accA) (local.get $a1))
        (v128.store offset=32 (local.get $accA) (local.get $a2)) (v128.store offset=48 (local.get $accA) (local.get $a3))
        (v128.store offset=0 (local.get $accB) (local.get $b0)) (v128.store offset=16 (local.get $accB) (local.get $b1))
        (v128.store offset=32 (local.get $accB) (local.get $b2)) (v128.store offset=48 (local.get $accB) (local.get $b3))
        (local.set $accA (i32.add (local.get $accA) (i32.const 64)))
        (local.set $accB (i32.add (local.get $accB) (i32.const 64)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $columns))))

  ;; Along stored x, two finished lines at once (RGB int32 sums of the y pass per pixel, one sample
  ;; readable past the last pixel): output a of each = unit · Σ_j weights[a·stride + j] ·
  ;; line[starts[a] + j] for j < sizes[a], each sample converted to float32 as it is read, one vector
  ;; per pixel (lane 3 is the next pixel's red, never stored); `unit` is the y weights' fixed-point
  ;; step (a power of two, so the product is exact). Then normalised: with `eightBit`, clamped to
  ;; 0..255 and rounded half to even (f32x4.nearest), then v·scale + shift per channel in float32
  ;; (`norm`: the scale vector, the shift vector, the unit splat). Each line is written as three
  ;; planes of `outs` floats, reds, greens, blues: A's from `dstA`, B's from `dstB`. The
  ;; two lines share the taps, their weights and the loop, which cost more than the sums. One line
  ;; alone is passed as both A and B.
  (func (export "horizontal")
    (param $lineA i32) (param $lineB i32) (param $outs i32) (param $starts i32) (param $sizes i32)
    (param $weights i32) (param $stride i32) (param $norm i32) (param $eightBit i32)
    (param $dstA i32) (param $dstB i32)
    (local $a i32) (local $p i32) (local $w i32) (local $end i32) (local $o i32) (local $plane i32)
    (local $toB i32) (local $k v128)
    (local $sumA v128) (local $sumB v128) (local $scale v128) (local $shift v128) (local $unit v128)
    (local.set $scale (v128.load offset=0 (local.get $norm)))
    (local.set $shift (v128.load offset=16 (local.get $norm)))
    (local.set $unit (v128.load offset=32 (local.get $norm)))
    (local.set $stride (i32.shl (local.get $stride) (i32.const 2)))
    (local.set $plane (i32.shl (local.get $outs) (i32.const 2)))
    (local.set $toB (i32.sub (local.get $lineB) (local.get $lineA)))
    (block $done
      (loop $outputs
        (br_if $done (i32.ge_u (local.get $a) (local.get $outs)))
        (local.set $o (i32.shl (local.get $a) (i32.const 2)))
        (local.set $p (i32.add (local.get $lineA)
          (i32.mul (i32.load (i32.add (local.get $starts) (local.get $o))) (i32.const 12))))
        (local.set $w (i32.add (local.get $weights) (i32.mul (local.get $a) (local.get $stride))))
        (local.set $end (i32.add (local.get $w)
          (i32.shl (i32.load (i32.add (local.get $sizes) (local.get $o))) (i32.const 2))))
        (local.set $sumA (v128.const f32x4 0 0 0 0))
        (local.set $sumB (v128.const f32x4 0 0 0 0))
        (block $tapsDone
          (loop $tap
            (br_if $tapsDone (i32.ge_u (local.get $w) (local.get $end)))
            (local.set $k (f32x4.splat (f32.load (local.get $w))))
            (local.set $sumA (f32x4.add (local.get $sumA)
              (f32x4.mul (local.get $k) (f32x4.convert_i32x4_s (v128.load (local.get $p))))))
            (local.set $sumB (f32x4.add (local.get $sumB)
              (f32x4.mul (local.get $k) (f32x4.convert_i32x4_s (v128.load (i32.add (local.get $p) (local.get $toB)))))))
            (local.set $p (i32.add (local.get $p) (i32.const 12)))
            (local.set $w (i32.add (local.get $w) (i32.const 4)))
            (br $tap)))
        (local.set $sumA (f32x4.mul (local.get $sumA) (local.get $unit)))
        (local.set $sumB (f32x4.mul (local.get $sumB) (local.get $unit)))
        (if (local.get $eightBit)
          (then
            (local.set $sumA (f32x4.nearest (f32x4.min (f32x4.splat (f32.const 255))
              (f32x4.max (v128.const f32x4 0 0 0 0) (local.get $sumA)))))
            (local.set $sumB (f32x4.nearest (f32x4.min (f32x4.splat (f32.const 255))
              (f32x4.max (v128.const f32x4 0 0 0 0) (local.get $sumB)))))))
        (local.set $sumA (f32x4.add (f32x4.mul (local.get $sumA) (local.get $scale)) (local.get $shift)))
        (local.set $sumB (f32x4.add (f32x4.mul (local.get $sumB) (local.get $scale)) (local.get $shift)))
        (local.set $p (i32.add (local.get $dstA) (local.get $o)))
        (f32.store (local.get $p) (f32x4.extract_lane 0 (local.get $sumA)))
        (f32.store (i32.add (local.get $p) (local.get $plane)) (f32x4.extract_lane 1 (local.get $sumA)))
        (f32.store (i32.add (local.get $p) (i32.shl (local.get $plane) (i32.const 1))) (f32x4.extract_lane 2 (local.get $sumA)))
        (local.set $p (i32.add (local.get $dstB) (local.get $o)))
        (f32.store (local.get $p) (f32x4.extract_lane 0 (local.get $sumB)))
        (f32.store (i32.add (local.get $p) (local.get $plane)) (f32x4.extract_lane 1 (local.get $sumB)))
        (f32.store (i32.add (local.get $p) (i32.shl (local.get $plane) (i32.const 1))) (f32x4.extract_lane 2 (local.get $sumB)))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (br $outputs)))))
