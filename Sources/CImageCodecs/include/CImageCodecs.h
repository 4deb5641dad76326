// PNG and JPEG decoding to 8-bit RGB for TandemData's image pipeline, through libpng and libjpeg(-turbo).
// Both libraries report errors by longjmp, which Swift cannot survive, so the setjmp sites live here in C
// and every failure comes back as a non-zero status with the library's message in `error`.
#ifndef TANDEM_C_IMAGE_CODECS_H
#define TANDEM_C_IMAGE_CODECS_H

#include <stddef.h>
#include <zlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A decoded image: `height` x `width` x 3 bytes, RGB, rows top to bottom (HWC). `pixels` is malloc'd
/// (free it with `tdimg_free`); on failure it is NULL and `error` holds the reason.
typedef struct {
    int width;
    int height;
    unsigned char *pixels;
    char error[256];
} tdimg_image;

/// Decodes a PNG held in memory. Grey, grey+alpha, RGB, RGBA and palette images of any bit depth,
/// interlaced or not, become 8-bit RGB: alpha and tRNS transparency are dropped (as Pillow's
/// convert("RGB") does), 16-bit samples keep their high byte, grey is replicated, no gamma is applied.
/// Returns 0 on success.
int tdimg_decode_png(const unsigned char *data, size_t size, tdimg_image *out);

/// Decodes a JPEG held in memory with libjpeg's defaults (JDCT_ISLOW, fancy upsampling), as Pillow does.
/// Greyscale and YCbCr/RGB JPEGs become RGB; CMYK and YCCK ones are converted as Pillow's
/// convert("RGB") converts its (Adobe-inverted) CMYK. Returns 0 on success.
int tdimg_decode_jpeg(const unsigned char *data, size_t size, tdimg_image *out);

/// Writes `height` x `width` 8-bit pixels of `channels` (1: grey, 3: RGB) bytes each, rows top to bottom,
/// as a PNG file at `path` (replacing it). Returns 0 on success; on failure `error` (`error_size` bytes)
/// holds the reason and the file may be partly written.
int tdimg_write_png(const char *path, const unsigned char *pixels, int width, int height, int channels,
                    char *error, size_t error_size);

/// Frees `image->pixels`.
void tdimg_free(tdimg_image *image);

#ifdef __cplusplus
}
#endif

#endif
