
$0b7e8f52-3c1d-4e7a-9a55-5f2d8c1e9b10AfterSalesRequested"c-1*o-10€°­ÇŸˆ‘:
fuzzi-1B 0123456789abcdef0123456789abcdefJ$6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7òÀ
r-1k-1o-1"b-1(0:
l1sku-1Bå±å¹•æœ‰åˆ’ç—• scratchedJl
https://img.example/1.jpg
image/jpeg¹`"@abababababababababababababababababababababababababababababababab`€°­ÇŸˆ‘zzh-CN