@_exported import TandemTensor
