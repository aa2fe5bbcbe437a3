;; The two passes of resample.ts's filter in WebAssembly SIMD128 (no relaxed SIMD), float32.
;; scripts/build-wasm.mjs assembles this file into resample-wasm.ts; resample.ts lays out the
;; memory (source rows, accumulator lines, taps) and calls the two functions.
(module
  (memory (export "memory") 1)

  ;; Along stored y, two lines from the same rows at once: accA[x] += Σ_j weightsA[j] · rows[j·rowBytes + x]
  ;; and accB[x] += Σ_j weightsB[j] · rows[j·rowBytes + x], for x below `bytes` rounded up to 16 (so
  ;; rows need 15 readable bytes past their end, acc lines whole vectors), each from 0 when its
  ;; `fresh` flag is set. Each 16 bytes of a row are widened to floats once for both lines (the
  ;; widening costs as much as the two multiply-adds). One line alone is passed as both A and B:
  ;; the same sums, stored twice. Rows are 8-bit samples (RGB interleaved, any channel), acc
  ;; float32 aligned to 16. Taps are added in order into one sum per sample, so splitting them
  ;; over calls gives the same sums.
  (func (export "vertical")
    (param $rows i32) (param $rowBytes i32) (param $taps i32) (param $bytes i32)
    (param $weightsA i32) (param $accA i32) (param $freshA i32)
    (param $weightsB i32) (param $accB i32) (param $freshB i32)
    (local $x i32) (local $p i32) (local $wa i32) (local $wb i32) (local $end i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local $ka v128) (local $kb v128) (local $v v128) (local $h v128) (local $c v128)
    (local.set $end (i32.add (local.get $weightsA) (i32.shl (local.get $taps) (i32.const 2))))
    (block $done
      (loop $columns
        (br_if $done (i32.ge_u (local.get $x) (local.get $bytes)))
        (if (local.get $freshA)
          (then
            (local.set $a0 (v128.const f32x4 0 0 0 0))
            (local.set $a1 (v128.const f32x4 0 0 0 0))
            (local.set $a2 (v128.const f32x4 0 0 0 0))
            (local.set $a3 (v128.const f32x4 0 0 0 0)))
          (else
            (local.set $a0 (v128.load offset=0 (local.get $accA)))
            (local.set $a1 (v128.load offset=16 (local.get $accA)))
            (local.set $a2 (v128.load offset=32 (local.get $accA)))
            (local.set $a3 (v128.load offset=48 (local.get $accA)))))
        (if (local.get $freshB)
          (then
            (local.set $b0 (v128.const f32x4 0 0 0 0))
            (local.set $b1 (v128.const f32x4 0 0 0 0))
            (local.set $b2 (v128.const f32x4 0 0 0 0))
            (local.set $b3 (v128.const f32x4 0 0 0 0)))
          (else
            (local.set $b0 (v128.load offset=0 (local.get $accB)))
            (local.set $b1 (v128.load offset=16 (local.get $accB)))
            (local.set $b2 (v128.load offset=32 (local.get $accB)))
            (local.set $b3 (v128.load offset=48 (local.get $accB)))))
        (local.set $p (i32.add (local.get $rows) (local.get $x)))
        (local.set $wa (local.get $weightsA))
        (local.set $wb (local.get $weightsB))
        (block $tapsDone
          (loop $tap
            (br_if $tapsDone (i32.ge_u (local.get $wa) (local.get $end)))
            (local.set $ka (f32x4.splat (f32.load (local.get $wa))))
            (local.set $kb (f32x4.splat (f32.load (local.get $wb))))
            (local.set $v (v128.load (local.get $p)))
            ;; 16 bytes → 4 × 4 floats (values 0..255, so the signed conversion is exact)
            (local.set $h (i16x8.extend_low_i8x16_u (local.get $v)))
            (local.set $c (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_u (local.get $h))))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $ka) (local.get $c))))
            (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $kb) (local.get $c))))
            (local.set $c (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_u (local.get $h))))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $ka) (local.get $c))))
            (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $kb) (local.get $c))))
            (local.set $h (i16x8.extend_high_i8x16_u (local.get $v)))
            (local.set $c (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_u (local.get $h))))
            (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $ka) (local.get $c))))
            (local.set $b2 (f32x4.add (local.get $b2) (f32x4.mul (local.get $kb) (local.get $c))))
            (local.set $c (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_u (local.get $h))))
            (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $ka) (local.get $c))))
            (local.set $b3 (f32x4.add (local.get $b3) (f32x4.mul (local.get $kb) (local.get $c))))
            (local.set $p (i32.add (local.get $p) (local.get $rowBytes)))
            (local.set $wa (i32.add (local.get $wa) (i32.const 4)))
            (local.set $wb (i32.add (local.get $wb) (i32.const 4)))
            (br $tap)))
        (v128.store offset=0 (local.get $accA) (local.get $a0))
        (v128.store offset=16 (local.get $accA) (local.get $a1))
        (v128.store offset=32 (local.get $accA) (local.get $a2))
        (v128.store offset=48 (local.get $accA) (local.get $a3))
        (v128.store offset=0 (local.get $accB) (local.get $b0))
        (v128.store offset=16 (local.get $accB) (local.get $b1))
        (v128.store offset=32 (local.get $accB) (local.get $b2))
        (v128.store offset=48 (local.get $accB) (local.get $b3))
        (local.set $accA (i32.add (local.get $accA) (i32.const 64)))
        (local.set $accB (i32.add (local.get $accB) (i32.const 64)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $columns))))

  ;; Along stored x, two finished lines at once (RGB float32 per pixel, one float readable past the
  ;; last pixel): output a of each = Σ_j weights[a·stride + j] · line[starts[a] + j] for j < sizes[a],
  ;; one vector per pixel (lane 3 is the next pixel's red, never stored), then normalised: with
  ;; `eightBit`, clamped to 0..255 and rounded half to even (f32x4.nearest), then v·scale + shift
  ;; per channel in float32 (`norm`: the scale vector, then the shift vector). Each line is written
  ;; as three planes of `outs` floats, reds, greens, blues: A's from `dstA`, B's from `dstB`. The
  ;; two lines share the taps, their weights and the loop, which cost more than the sums. One line
  ;; alone is passed as both A and B.
  (func (export "horizontal")
    (param $lineA i32) (param $lineB i32) (param $outs i32) (param $starts i32) (param $sizes i32)
    (param $weights i32) (param $stride i32) (param $norm i32) (param $eightBit i32)
    (param $dstA i32) (param $dstB i32)
    (local $a i32) (local $p i32) (local $w i32) (local $end i32) (local $o i32) (local $plane i32)
    (local $toB i32) (local $k v128)
    (local $sumA v128) (local $sumB v128) (local $scale v128) (local $shift v128)
    (local.set $scale (v128.load offset=0 (local.get $norm)))
    (local.set $shift (v128.load offset=16 (local.get $norm)))
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
              (f32x4.mul (local.get $k) (v128.load (local.get $p)))))
            (local.set $sumB (f32x4.add (local.get $sumB)
              (f32x4.mul (local.get $k) (v128.load (i32.add (local.get $p) (local.get $toB))))))
            (local.set $p (i32.add (local.get $p) (i32.const 12)))
            (local.set $w (i32.add (local.get $w) (i32.const 4)))
            (br $tap)))
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
