// The setjmp sites of libpng and libjpeg: see include/CImageCodecs.h.
#include "CImageCodecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

static void tdimg_fail(tdimg_image *out, const char *message) {
    snprintf(out->error, sizeof out->error, "%s", message);
    free(out->pixels);
    out->pixels = NULL;
}

void tdimg_free(tdimg_image *image) {
    free(image->pixels);
    image->pixels = NULL;
}

// Images beyond this many pixels are refused rather than allocated (a corrupt header can claim 2^31 x 2^31).
static const size_t tdimg_max_pixels = (size_t)1 << 28;

// MARK: - PNG

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t offset;
} tdimg_png_source;

typedef struct {
    jmp_buf jump;
    tdimg_image *out;
} tdimg_png_errors;

static void tdimg_png_read(png_structp png, png_bytep buffer, png_size_t length) {
    tdimg_png_source *source = (tdimg_png_source *)png_get_io_ptr(png);
    if (source->size - source->offset < length) png_error(png, "truncated file: data ends early");
    memcpy(buffer, source->data + source->offset, length);
    source->offset += length;
}

static void tdimg_png_error(png_structp png, png_const_charp message) {
    tdimg_png_errors *errors = (tdimg_png_errors *)png_get_error_ptr(png);
    snprintf(errors->out->error, sizeof errors->out->error, "libpng: %s", message);
    longjmp(errors->jump, 1);
}

static void tdimg_png_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

int tdimg_decode_png(const unsigned char *data, size_t size, tdimg_image *out) {
    memset(out, 0, sizeof *out);
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        tdimg_fail(out, "not a PNG file (bad signature)");
        return 1;
    }
    tdimg_png_errors errors;
    errors.out = out;
    tdimg_png_source source = {data, size, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &errors, tdimg_png_error, tdimg_png_warning);
    if (!png) {
        tdimg_fail(out, "libpng: cannot create the read struct");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    // Volatile: read after longjmp.
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(errors.jump)) {
        free(rows);
        free(out->pixels);
        out->pixels = NULL;
        if (!out->error[0]) snprintf(out->error, sizeof out->error, "libpng: cannot create the info struct");
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        return 1;
    }
    png_set_read_fn(png, &source, tdimg_png_read);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    if ((size_t)width * height > tdimg_max_pixels) png_error(png, "image too large");
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    // Expanding a palette or low-depth grey also turns tRNS into an alpha channel: strip that too.
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)width * 3) png_error(png, "unexpected row size after conversion to RGB");
    out->pixels = (unsigned char *)malloc((size_t)width * height * 3);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    if (!out->pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = out->pixels + (size_t)y * width * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->width = (int)width;
    out->height = (int)height;
    return 0;
}

typedef struct {
    jmp_buf jump;
    char *error;
    size_t error_size;
} tdimg_png_write_errors;

static void tdimg_png_write_error(png_structp png, png_const_charp message) {
    tdimg_png_write_errors *errors = (tdimg_png_write_errors *)png_get_error_ptr(png);
    snprintf(errors->error, errors->error_size, "libpng: %s", message);
    longjmp(errors->jump, 1);
}

int tdimg_write_png(const char *path, const unsigned char *pixels, int width, int height, int channels,
                    char *error, size_t error_size) {
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3)) {
        snprintf(error, error_size, "cannot write a %dx%d image of %d channels as PNG", width, height, channels);
        return 1;
    }
    FILE *volatile file = fopen(path, "wb");
    if (!file) {
        snprintf(error, error_size, "cannot open for writing");
        return 1;
    }
    tdimg_png_write_errors errors;
    errors.error = error;
    errors.error_size = error_size;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &errors, tdimg_png_write_error, tdimg_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        snprintf(error, error_size, "libpng: cannot create the write structs");
        png_destroy_write_struct(&png, info ? &info : NULL);
        fclose(file);
        return 1;
    }
    if (setjmp(errors.jump)) {
        png_destroy_write_struct(&png, &info);
        fclose(file);
        return 1;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(file) != 0) {
        snprintf(error, error_size, "cannot finish writing (disk full?)");
        return 1;
    }
    return 0;
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
} tdimg_jpeg_errors;

static void tdimg_jpeg_error(j_common_ptr cinfo) {
    tdimg_jpeg_errors *errors = (tdimg_jpeg_errors *)cinfo->err;
    longjmp(errors->jump, 1);
}

// A premature end of data is an error here, as in Pillow (a truncated JPEG would decode to grey fill);
// other warnings (extraneous bytes before a marker, ...) are ignored, as Pillow ignores them.
static void tdimg_jpeg_warning(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) tdimg_jpeg_error(cinfo);
}

// Pillow's CMYK -> RGB: r = (255 - k) - c * (255 - k) / 255 with its rounding division by 255.
static unsigned char tdimg_cmyk_channel(unsigned c, unsigned nk) {
    unsigned t = c * nk + 128;
    int v = (int)nk - (int)(((t >> 8) + t) >> 8);
    return (unsigned char)(v < 0 ? 0 : v);
}

int tdimg_decode_jpeg(const unsigned char *data, size_t size, tdimg_image *out) {
    memset(out, 0, sizeof *out);
    struct jpeg_decompress_struct cinfo;
    tdimg_jpeg_errors errors;
    cinfo.err = jpeg_std_error(&errors.manager);
    errors.manager.error_exit = tdimg_jpeg_error;
    errors.manager.emit_message = tdimg_jpeg_warning;
    unsigned char *volatile row = NULL;
    if (setjmp(errors.jump)) {
        char message[JMSG_LENGTH_MAX];
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, message);
        snprintf(out->error, sizeof out->error, "libjpeg: %s", message);
        free(row);
        free(out->pixels);
        out->pixels = NULL;
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);
    size_t width = cinfo.output_width, height = cinfo.output_height;
    if (width * height > tdimg_max_pixels) {
        snprintf(out->error, sizeof out->error, "image too large (%zu x %zu)", width, height);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    out->pixels = (unsigned char *)malloc(width * height * 3);
    row = (unsigned char *)malloc(width * (size_t)cinfo.output_components);
    if (!out->pixels || !row) {
        tdimg_fail(out, "out of memory");
        free(row);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        size_t y = cinfo.output_scanline;
        JSAMPROW target = cmyk ? row : out->pixels + y * width * 3;
        jpeg_read_scanlines(&cinfo, &target, 1);
        if (cmyk) {
            // Adobe JPEGs store CMYK inverted; Pillow reads them as such ("CMYK;I"): the stored k is 255 - K.
            unsigned char *rgb = out->pixels + y * width * 3;
            for (size_t x = 0; x < width; x++) {
                unsigned nk = row[4 * x + 3];
                for (int c = 0; c < 3; c++) rgb[3 * x + c] = tdimg_cmyk_channel(255u - row[4 * x + c], nk);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->width = (int)width;
    out->height = (int)height;
    return 0;
}
