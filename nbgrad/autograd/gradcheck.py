def gradcheck(*a, **k):
    raise RuntimeError("gradcheck: in progress")


gradgradcheck = gradcheck
